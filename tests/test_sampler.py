"""Tests for corpusforge.sampler: exact balance, purity per (seed, index), splits and plan options.
Plans alone, from the shipped vocab or a hand-written one: planning never touches a model, so
the balance bounds are checked on tens of thousands of plans in about a second.
"""
from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from collections import Counter

import numpy as np
import pytest

from corpusforge import sampler
from corpusforge.errors import CorpusforgeError
from corpusforge.sampler import PlanOptions, StoryPlan, plan, split_of, template_variables
from corpusforge.vocab import load_vocab

SEEDS = (0, 1, 12345)
N = 10_000
N_CHECKED = (1000, 1234, 2500, 5000, 7777, 10_000)


@pytest.fixture(scope="module")
def shipped():
    return load_vocab()


@pytest.fixture(scope="module")
def custom(tmp_path_factory):
    """A hand-written space: tiny word lists (many passes), extreme probabilities, uneven weights."""
    folder = tmp_path_factory.mktemp("custom")
    (folder / "nouns.txt").write_text("cat\ndog\nhat\ncup\nsun\nbed\nbox\n")
    (folder / "verbs.txt").write_text("run\nhop\nsit\nsing\nnap\n")
    (folder / "adjectives.txt").write_text("red\nbig\nwet\n")
    features = [("A", 0.1), ("B", 0.5), ("C", 0.9), ("D", 0.3), ("Never", 0.0), ("Always", 1.0)]
    (folder / "features.toml").write_text("".join(
        f'[[feature]]\nlabel = "{label}"\nphrase = "has {label}"\nprobability = {p}\n\n' for label, p in features))
    (folder / "axes.toml").write_text(textwrap.dedent("""\
        [[axis]]
        name = "size"
        [[axis.value]]
        label = "small"
        phrase = "It is small."
        [[axis.value]]
        label = "middle"
        phrase = "It is middle sized."
        weight = 2
        [[axis.value]]
        label = "huge"
        phrase = "It is huge."
        weight = 5

        [[axis]]
        name = "color"
        """) + "".join(f'[[axis.value]]\nlabel = "c{i}"\nphrase = "Color {i}."\n' for i in range(7)) + textwrap.dedent("""\

        [[axis]]
        name = "only"
        [[axis.value]]
        label = "one"
        phrase = "There is one."
        """))
    return load_vocab(folder)


def deviations(vocab, plans, options, n_min=1000) -> dict[str, float]:
    """Worst deviation of every bound over every prefix n = n_min..len(plans), in percentage points."""
    n = np.arange(1, len(plans) + 1)[:, None]
    probs = np.array([f.probability for f in vocab.features])
    on = np.array([[f in p.features for f in vocab.feature_names] for p in plans], dtype=np.int64)
    out = {"feature": float(np.abs(np.cumsum(on, 0) / n - probs)[n_min - 1:].max()) * 100}
    pairs = [np.abs(np.cumsum(on[:, a] * on[:, b]) / n[:, 0] - probs[a] * probs[b])[n_min - 1:].max()
             for a, b in itertools.combinations(range(len(probs)), 2)]
    out["pair"] = float(max(pairs)) * 100
    worst = 0.0
    for k, axis in enumerate(vocab.axes):
        weights = np.array([v.weight for v in axis.values]) / sum(v.weight for v in axis.values)
        chosen = np.array([[p.axes[k] == (axis.name, label) for label in axis.labels()] for p in plans], dtype=np.int64)
        worst = max(worst, float(np.abs(np.cumsum(chosen, 0) / n - weights)[n_min - 1:].max()))
    out["axis"] = worst * 100
    weights = np.array(options.model_weights) / sum(options.model_weights)
    chosen = np.array([[p.model == m for m in range(len(weights))] for p in plans], dtype=np.int64)
    out["model"] = float(np.abs(np.cumsum(chosen, 0) / n - weights)[n_min - 1:].max()) * 100
    return out


@pytest.fixture(scope="module")
def balanced(shipped, custom):
    """10,000 balanced plans per (vocab, seed), three models weighted 1:2:1, made once."""
    options = PlanOptions(model_weights=(1.0, 2.0, 1.0))
    return {(name, seed): [plan(v, seed, i, options) for i in range(N)]
            for name, v in (("shipped", shipped), ("custom", custom)) for seed in SEEDS}, options


# --- the balance bounds (issue 8) -----------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("space", ["shipped", "custom"])
def test_features_axes_pairs_and_models_stay_within_bounds_at_every_n_from_1000_to_10000(balanced, shipped, custom, space, seed):
    """Every prefix n = 1,000..10,000 at once: features and axis values +-1 point, pairs +-2, models +-1."""
    plans, options = balanced
    vocab = shipped if space == "shipped" else custom
    worst = deviations(vocab, plans[space, seed], options)
    assert worst["feature"] <= 1.0, worst
    assert worst["pair"] <= 2.0, worst
    assert worst["axis"] <= 1.0, worst
    assert worst["model"] <= 1.0, worst


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("space", ["shipped", "custom"])
def test_every_word_is_used_evenly_each_pass_through_its_list(balanced, shipped, custom, space, seed):
    """Each pass through a list is a permutation of it, so uses differ by at most 1 at every n."""
    plans = balanced[0][space, seed]
    vocab = shipped if space == "shipped" else custom
    for attr, words in (("noun", vocab.nouns), ("verb", vocab.verbs), ("adjective", vocab.adjectives)):
        used = [getattr(p, attr) for p in plans]
        for start in range(0, N - len(words) + 1, len(words)):
            assert sorted(used[start:start + len(words)]) == sorted(words), f"{attr} pass at {start}"
        for n in N_CHECKED:
            counts = Counter(used[:n])
            assert max(counts[w] for w in words) - min(counts[w] for w in words) <= 1, (attr, n)


def test_zero_and_one_probabilities_mean_never_and_always(balanced):
    plans = balanced[0]["custom", 0]
    assert not any("Never" in p.features for p in plans)
    assert all("Always" in p.features for p in plans)


def test_every_plan_has_one_value_per_axis_in_axes_order(balanced, custom):
    for p in balanced[0]["custom", 1][:500]:
        assert [name for name, _ in p.axes] == ["size", "color", "only"]
        assert p.axis_labels()["only"] == "one"
        for axis, (_, label) in zip(custom.axes, p.axes):
            assert label in axis.labels()


def test_balanced_plans_are_far_closer_to_the_targets_than_independent_draws(shipped):
    """The point of balancing: at n = 1,000 iid draws miss a feature by several points."""
    iid = PlanOptions(balance=False)
    worst = deviations(shipped, [plan(shipped, 0, i, iid) for i in range(2000)], iid)
    assert worst["feature"] > 1.0  # measured 1.9-3.7 points over seeds 0-5; balanced stays under 0.3


# --- exactly K features ---------------------------------------------------------------

@pytest.mark.parametrize("space, k, expected", [
    # Hand-computed inclusion probabilities K * p / sum(p), capped at 1 with the rest shared out.
    ("shipped", 2, [2 * p / 2.05 for p in (0.5, 0.25, 0.35, 0.35, 0.25, 0.35)]),
    ("custom", 2, [2 * p / 2.8 for p in (0.1, 0.5, 0.9, 0.3, 0.0, 1.0)]),
    ("custom", 3, [0.1 / 0.9, 0.5 / 0.9, 1.0, 0.3 / 0.9, 0.0, 1.0]),  # Always and C capped at 1
    ("custom", 5, [1.0, 1.0, 1.0, 1.0, 0.0, 1.0]),  # every feature that can be chosen
    ("custom", 0, [0.0] * 6),
])
def test_exactly_k_features_each_at_its_inclusion_probability(shipped, custom, space, k, expected):
    # Systematic sampling gives exact marginals; pairs are not p_i * p_j, so only marginals are pinned.
    vocab = shipped if space == "shipped" else custom
    options = PlanOptions(features_per_story=k)
    plans = [plan(vocab, 7, i, options) for i in range(5000)]
    assert all(len(p.features) == k == len(set(p.features)) for p in plans)
    on = np.array([[f in p.features for f in vocab.feature_names] for p in plans], dtype=np.int64)
    freq = np.cumsum(on, 0) / np.arange(1, len(plans) + 1)[:, None]
    assert np.abs(freq - np.array(expected))[999:].max() <= 0.01


def test_exactly_k_keeps_the_file_order_of_features(shipped):
    order = shipped.feature_names
    for i in range(200):
        chosen = plan(shipped, 3, i, PlanOptions(features_per_story=3)).features
        assert list(chosen) == sorted(chosen, key=order.index)


def test_choosing_k_or_adding_a_model_leaves_words_and_axes_unchanged(shipped):
    """Fixed dimension layout: one option changes only its own part of each plan."""
    base = [plan(shipped, 2, i) for i in range(300)]
    for options in (PlanOptions(features_per_story=2), PlanOptions(model_weights=(1.0, 1.0))):
        other = [plan(shipped, 2, i, options) for i in range(300)]
        assert [(p.words(), p.axes) for p in other] == [(p.words(), p.axes) for p in base]


# --- purity ---------------------------------------------------------------------------

def test_plan_is_the_same_in_any_order_and_after_any_other_plans(shipped):
    options = PlanOptions(features_per_story=None, model_weights=(1.0, 3.0), validation_fraction=0.1, test_fraction=0.1)
    forward = [plan(shipped, 5, i, options) for i in range(3000)]
    # Empty the caches so nothing computed for earlier indices can leak into later ones.
    sampler._SPACES.clear()
    sampler._permutation.cache_clear()
    order = list(range(3000))
    np.random.default_rng(0).shuffle(order)
    shuffled = {i: plan(shipped, 5, i, options) for i in order}
    assert [shuffled[i] for i in range(3000)] == forward
    sampler._SPACES.clear()
    assert plan(shipped, 5, 2999, options) == forward[2999]
    assert plan(load_vocab(), 5, 1234, options) == forward[1234]  # another Vocab object, same content


def test_plan_of_a_large_index_is_exact_and_cheap(shipped):
    """Integer arithmetic: index 10**9 is one point like any other, in the same space."""
    p = plan(shipped, 0, 10**9)
    assert p.id == 10**9 and p.noun in shipped.nouns and len(p.axes) == 3
    assert plan(shipped, 0, 10**9) == p


def test_different_seeds_give_different_plans(shipped):
    a = [plan(shipped, 0, i) for i in range(50)]
    b = [plan(shipped, 1, i) for i in range(50)]
    assert sum(x.words() != y.words() for x, y in zip(a, b)) > 40
    assert sum(x.features != y.features for x, y in zip(a, b)) > 10


def old_iid_plan(vocab, seed, index, k=None):
    """The sampler before balancing, copied verbatim: balance=False must reproduce it."""
    rng = np.random.default_rng([seed, index])
    noun = vocab.nouns[rng.integers(len(vocab.nouns))]
    verb = vocab.verbs[rng.integers(len(vocab.verbs))]
    adjective = vocab.adjectives[rng.integers(len(vocab.adjectives))]
    probs = np.array([f.probability for f in vocab.features])
    if k is None:
        chosen = np.flatnonzero(rng.random(len(probs)) < probs)
    else:
        weights = probs / probs.sum() if probs.sum() > 0 else None
        chosen = np.sort(rng.choice(len(probs), size=k, replace=False, p=weights))
    return (str(noun), str(verb), str(adjective), tuple(vocab.features[i].label for i in chosen))


@pytest.mark.parametrize("k", [None, 2])
def test_no_balance_reproduces_the_old_independent_plans(shipped, k):
    options = PlanOptions(features_per_story=k, balance=False)
    for seed in (0, 5):
        for i in range(300):
            p = plan(shipped, seed, i, options)
            assert (p.noun, p.verb, p.adjective, p.features) == old_iid_plan(shipped, seed, i, k)


def test_no_balance_still_draws_axes_and_models_by_weight(custom):
    options = PlanOptions(balance=False, model_weights=(1.0, 3.0))
    plans = [plan(custom, 0, i, options) for i in range(4000)]
    sizes = Counter(p.axis_labels()["size"] for p in plans)
    assert abs(sizes["huge"] / 4000 - 5 / 8) < 0.03 and abs(sizes["small"] / 4000 - 1 / 8) < 0.03
    assert abs(sum(p.model for p in plans) / 4000 - 0.75) < 0.03


# --- splits ---------------------------------------------------------------------------

def test_split_of_is_a_fixed_hash_not_pythons_hash():
    # Pinned values: blake2b is the same in every process; Python's str hash is salted per process.
    got = [split_of(f"cat|run|red{i}", 0.3, 0.3) for i in range(8)]
    assert got == PINNED_SPLITS
    code = "from corpusforge.sampler import split_of; print([split_of(f'cat|run|red{i}', 0.3, 0.3) for i in range(8)])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONHASHSEED": "123", "PATH": ""}, check=True).stdout
    assert out.strip() == str(PINNED_SPLITS)


PINNED_SPLITS = ["train", "test", "train", "train", "train", "train", "validation", "train"]


def test_split_fractions_are_about_as_requested():
    counts = Counter(split_of(f"key{i}", 0.1, 0.05) for i in range(20_000))
    assert abs(counts["validation"] / 20_000 - 0.10) < 0.01
    assert abs(counts["test"] / 20_000 - 0.05) < 0.01


def test_all_stories_of_one_word_triple_share_a_split_in_every_build(custom):
    """The custom lists have 105 triples, so 3,000 plans repeat each one many times."""
    options = PlanOptions(validation_fraction=0.2, test_fraction=0.2)
    seen: dict[tuple, set] = {}
    for seed in (0, 1):
        for i in range(3000):
            p = plan(custom, seed, i, options)
            seen.setdefault((p.noun, p.verb, p.adjective), set()).add(p.split)
    assert len(seen) == 105 and all(len(splits) == 1 for splits in seen.values())
    assert {s for splits in seen.values() for s in splits} == {"train", "validation", "test"}


def test_split_key_id_hashes_the_story_id(custom):
    options = PlanOptions(validation_fraction=0.2, test_fraction=0.2, split_key="id")
    plans = [plan(custom, 3, i, options) for i in range(500)]
    assert all(p.split == split_of(str(p.id), 0.2, 0.2) for p in plans)
    hand = StoryPlan(77, 9, "cat", "run", "red", ())
    assert split_of(hand, 0.2, 0.2, split_key="id") == split_of("77", 0.2, 0.2)
    assert split_of(hand, 0.2, 0.2) == split_of("cat|run|red", 0.2, 0.2)


def test_raising_one_fraction_moves_stories_out_of_train_only():
    keys = [f"k{i}" for i in range(3000)]
    before = {k: split_of(k, 0.1, 0.1) for k in keys}
    more_validation = {k: split_of(k, 0.2, 0.1) for k in keys}
    more_test = {k: split_of(k, 0.1, 0.2) for k in keys}
    for after in (more_validation, more_test):
        moved = [k for k in keys if after[k] != before[k]]
        assert moved and all(before[k] == "train" for k in moved)


def test_without_fractions_every_plan_is_train(shipped):
    assert {plan(shipped, 0, i).split for i in range(300)} == {"train"}


# --- template variables ---------------------------------------------------------------

def test_template_variables_hold_words_features_and_each_axis_phrase(custom):
    hand = StoryPlan(3, 0, "cat", "run", "red", ("B", "Always"), (("size", "huge"), ("color", "c4"), ("only", "one")))
    assert template_variables(custom, hand) == {
        "noun": "cat", "verb": "run", "adjective": "red",
        "features": ["B", "Always"], "feature_phrases": ["has B", "has Always"],
        "axis_phrases": ["It is huge.", "Color 4.", "There is one."],
        "axis_labels": {"size": "huge", "color": "c4", "only": "one"},
        "size": "It is huge.", "color": "Color 4.", "only": "There is one.",
    }


# --- bad options ----------------------------------------------------------------------

@pytest.mark.parametrize("options, flag", [
    (PlanOptions(validation_fraction=-0.1), "--validation-fraction"),
    (PlanOptions(validation_fraction=float("nan")), "--validation-fraction"),
    (PlanOptions(test_fraction=-0.01), "--test-fraction"),
    (PlanOptions(validation_fraction=0.5, test_fraction=0.5), "--validation-fraction + --test-fraction"),
    (PlanOptions(features_per_story=7), "--features-per-story"),
    (PlanOptions(features_per_story=-1), "--features-per-story"),
    (PlanOptions(features_per_story=6, balance=False), "--features-per-story"),  # custom: 5 can be chosen
    (PlanOptions(model_weights=(1.0, 0.0)), "--model weight"),
    (PlanOptions(model_weights=()), "--model weight"),
    (PlanOptions(model_weights=(float("inf"),)), "--model weight"),
    (PlanOptions(split_key="triple"), "--split-key"),
])
def test_bad_options_raise_an_error_naming_the_flag(custom, options, flag):
    with pytest.raises(CorpusforgeError) as info:
        plan(custom, 0, 0, options)
    assert info.value.message.startswith(flag) and info.value.hint


def test_check_names_how_many_features_can_be_chosen(custom):
    with pytest.raises(CorpusforgeError) as info:
        PlanOptions(features_per_story=6).check(custom)
    assert "0 to 5" in info.value.message
    assert PlanOptions(features_per_story=5).check(custom).features_per_story == 5


def test_too_many_features_and_axes_to_balance_is_an_error_before_any_plan(tmp_path):
    """A hand-written vocab of 63 features: past the 64 Sobol' dimensions balancing has."""
    folder = tmp_path / "big"
    folder.mkdir()
    for name in ("nouns", "verbs", "adjectives"):
        (folder / f"{name}.txt").write_text("cat\n")
    (folder / "features.toml").write_text("".join(
        f'[[feature]]\nlabel = "F{i}"\nphrase = "has {i}"\nprobability = 0.5\n' for i in range(63)))
    big = load_vocab(folder)
    with pytest.raises(CorpusforgeError) as info:
        PlanOptions().check(big)
    assert info.value.message.startswith("--balance") and "--no-balance" in info.value.hint
    assert len(plan(big, 0, 0, PlanOptions(balance=False)).features) > 0


# --- preview --------------------------------------------------------------------------

def test_preview_with_too_many_features_per_story_is_one_red_line():
    """Through the real CLI in a subprocess: exit 1, one `error:` line, no numpy traceback."""
    proc = subprocess.run([sys.executable, "-m", "corpusforge", "preview", "--features-per-story", "7"],
                          capture_output=True, text=True, timeout=300)
    err = proc.stderr.strip()
    assert proc.returncode == 1 and "Traceback" not in err + proc.stdout
    assert err.startswith("error: --features-per-story") and len(err.splitlines()) == 1, err


def test_preview_shows_axes_and_only_asked_for_model_and_split():
    from corpusforge.preview import render_preview

    plain = render_preview(n=3, seed=0, recipe="tinystories-flat", vocab=None)
    assert plain.count("opening=") == 3 and "model=" not in plain and "split=" not in plain
    asked = render_preview(n=3, seed=0, recipe="tinystories-flat", vocab=None,
                           options=PlanOptions(model_weights=(1.0, 1.0), test_fraction=0.5))
    assert asked.count("model=") == 3 and asked.count("split=") == 3
