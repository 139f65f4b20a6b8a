"""Hugging Face Hub, corpora out: `push` after a build, `HubSink` shard by shard while a build runs.

(Models in, from the Hub or the package registry, is models.py.)

`HubClient` is the only place `HfApi` is called, so tests can pass a recording stand-in.
Every Hub failure becomes a one-line CorpusforgeError naming the fix; the token never appears in one.
"""
from __future__ import annotations

import json
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CorpusforgeError
from .shards import MANIFEST, STATE_DIR

REPO_TYPE = "dataset"
# The Hub advises fewer than 100 files per commit; bigger pushes are split.
MAX_FILES_PER_COMMIT = 100
# Uploaded with every commit that has anything to send, after the shards they describe.
CARD_FILES = ("README.md", MANIFEST, "stats.json")
PLOTS_DIR = "plots"
_SHARD = re.compile(r"^(data|rejects)/[a-z]+-\d{5}-of-\d{5}\.parquet$")
_OURS = re.compile(r"^(README\.md|corpusforge\.json|stats\.json|\.gitattributes|plots/[^/]+\.png)$")


# ----- the seam --------------------------------------------------------------------------


class HubClient:
    """The only place corpusforge calls `HfApi`. Tests pass a stand-in with the same methods."""

    def __init__(self, token: str | None = None, endpoint: str | None = None):
        from huggingface_hub import HfApi, get_token

        self.token = token or get_token()  # HF_TOKEN, else `hf auth login`
        self._api = HfApi(token=self.token, endpoint=endpoint)

    def check(self) -> None:
        """Raise at once when offline or without a token (before anything is sent)."""
        from huggingface_hub import constants
        from huggingface_hub import errors as hf_errors

        if constants.is_offline_mode():
            raise hf_errors.OfflineModeIsEnabled("HF_HUB_OFFLINE is set")
        if not self.token:
            raise hf_errors.LocalTokenNotFoundError("no token")

    def create_repo(self, repo_id: str, *, private: bool) -> str:
        return str(self._api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True))

    def list_files(self, repo_id: str) -> dict[str, int]:
        """{path: size in bytes} of every file on the repo's main branch."""
        from huggingface_hub.hf_api import RepoFile

        tree = self._api.list_repo_tree(repo_id, repo_type=REPO_TYPE, recursive=True)
        return {e.path: e.size for e in tree if isinstance(e, RepoFile)}

    def read_text(self, repo_id: str, path: str) -> str:
        return Path(self._api.hf_hub_download(repo_id, path, repo_type=REPO_TYPE)).read_text(encoding="utf-8")

    def commit(self, repo_id: str, add: list[tuple[str, Path | bytes]], delete: list[str], message: str) -> None:
        """One atomic commit: `add` (path in repo, local file or bytes) in order, then `delete`."""
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        ops = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=d if isinstance(d, bytes) else str(d)) for p, d in add]
        ops += [CommitOperationDelete(path_in_repo=p) for p in delete]
        self._api.create_commit(repo_id, ops, commit_message=message, repo_type=REPO_TYPE)


# ----- errors ------------------------------------------------------------------------------


def check_repo_id(repo_id: str) -> None:
    """Refuse anything but owner/name before a single request is made."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    hint = "write it as owner/name, e.g. your-name/tinystories-cpu"
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise CorpusforgeError(f"bad dataset repo id {repo_id!r}: it needs an owner", hint)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise CorpusforgeError(f"bad dataset repo id {repo_id!r}: {_first_line(e)}", hint) from None


def hub_error(e: BaseException, repo_id: str, token: str | None = None) -> CorpusforgeError:
    """A Hub failure as one line naming the fix; `token` is scrubbed from anything quoted."""
    from huggingface_hub import errors as hf_errors

    def scrub(text: str) -> str:
        return text.replace(token, "***") if token else text

    if isinstance(e, CorpusforgeError):
        return CorpusforgeError(scrub(e.message), e.hint and scrub(e.hint))
    if isinstance(e, hf_errors.OfflineModeIsEnabled):
        return CorpusforgeError(f"cannot reach the Hub for {repo_id}: HF_HUB_OFFLINE is set", "unset HF_HUB_OFFLINE and run again")
    if isinstance(e, hf_errors.LocalTokenNotFoundError):
        return CorpusforgeError(f"no Hugging Face token to push to {repo_id}", "set HF_TOKEN to a write token or run `hf auth login`")
    if isinstance(e, hf_errors.HFValidationError):
        return CorpusforgeError(f"bad dataset repo id {repo_id!r}: {scrub(_first_line(e))}", "write it as owner/name")
    status = _status(e)
    if status == 401:
        return CorpusforgeError(f"the Hub refused the token for {repo_id} (401)", "set HF_TOKEN to a valid token or run `hf auth login` again")
    if status == 403:
        return CorpusforgeError(
            f"no write access to {repo_id} (403)",
            "use a token with write access (huggingface.co/settings/tokens) and a namespace you own",
        )
    if status == 404 or isinstance(e, hf_errors.RepositoryNotFoundError):
        return CorpusforgeError(f"dataset repo {repo_id} not found (404)", "check owner/name and that your token can see it")
    if status == 429:
        return CorpusforgeError(f"the Hub is rate-limiting pushes to {repo_id} (429)", "wait a few minutes, then push again; files already there are skipped")
    where = f" ({status})" if status else ""
    return CorpusforgeError(
        f"push to {repo_id} failed{where}: {type(e).__name__}: {scrub(_first_line(e))}",
        "check the network, then push again; files already on the Hub are skipped",
    )


def _status(e: BaseException) -> int | None:
    response = getattr(e, "response", None)
    return getattr(response, "status_code", None)


def _permanent(e: BaseException) -> bool:
    """Failures a retry cannot fix (so the back-off does not spend the rate limit on them)."""
    from huggingface_hub import errors as hf_errors

    return (isinstance(e, (hf_errors.OfflineModeIsEnabled, hf_errors.LocalTokenNotFoundError, hf_errors.HFValidationError, CorpusforgeError))
            or _status(e) in (400, 401, 403, 404))


def _retry_after(e: BaseException) -> float | None:
    response = getattr(e, "response", None)
    try:
        return float(response.headers.get("retry-after")) if response is not None else None
    except (TypeError, ValueError):
        return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


# ----- the local build ----------------------------------------------------------------------


def read_manifest(out: Path) -> dict:
    """The manifest of a build folder; anything else is refused."""
    out = Path(out)
    hint = "pass the --out folder of `corpusforge build`"
    if not out.is_dir():
        raise CorpusforgeError(f"{out} is not a folder", hint)
    path = out / MANIFEST
    if not path.is_file():
        raise CorpusforgeError(f"{out} is not a corpusforge build (no {MANIFEST})", hint)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CorpusforgeError(f"{path} is unreadable: {_first_line(e)}", "run the build again to rewrite it") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("n"), int):
        raise CorpusforgeError(f"{path} is not a corpusforge manifest (no n)", hint)
    return manifest


def build_progress(out: Path, manifest: dict) -> tuple[int, int, bool]:
    """(stories done, stories asked for, journals left): a build is finished when --n stories
    are done and no journal is open. Done means kept (in data/) when rejects are replaced (the
    default), every row when they are not (--no-replace). Rows come from parquet footers."""
    import pyarrow.parquet as pq

    out = Path(out)
    kept_only = manifest.get("fingerprint", {}).get("replace", False)
    done = sum(pq.read_metadata(path).num_rows for rel, path in _local_shards(out)
               if not (kept_only and rel.startswith("rejects/")))
    journals = any((out / STATE_DIR / "journal").glob("*.jsonl"))
    return done, int(manifest["n"]), journals


def _local_shards(out: Path) -> list[tuple[str, Path]]:
    """(path in repo, local path) of every sealed shard, sorted (temp files never match)."""
    found = []
    for folder in ("data", "rejects"):
        for path in sorted((out / folder).glob("*.parquet")):
            rel = f"{folder}/{path.name}"
            if _SHARD.match(rel):
                found.append((rel, path))
    return found


def _local_cards(out: Path) -> list[tuple[str, Path]]:
    """README.md, the manifest, stats.json and plots/*.png that exist, in upload order."""
    found = [(name, out / name) for name in CARD_FILES if (out / name).is_file()]
    found += [(f"{PLOTS_DIR}/{p.name}", p) for p in sorted((out / PLOTS_DIR).glob("*.png")) if not p.name.startswith(".")]
    return found


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


# ----- corpora out -------------------------------------------------------------------------


@dataclass(slots=True)
class PushReport:
    """What reached the repo, and what is still only local."""

    repo_id: str
    out: Path
    sent: list[str] = field(default_factory=list)
    unsent: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    error: CorpusforgeError | None = None

    @property
    def url(self) -> str:
        return f"https://huggingface.co/datasets/{self.repo_id}"

    def __str__(self) -> str:
        gone = f", {len(self.deleted)} stale removed" if self.deleted else ""
        if not self.unsent:
            return f"hub: {self.url} is up to date ({len(self.sent)} files sent{gone})"
        why = f": {self.error.message}" if self.error else ""
        return (f"hub: {len(self.unsent)} files not sent to {self.repo_id}{why} "
                f"- run `corpusforge push {self.out} {self.repo_id}` to send them")


_STOP = object()


class HubSink:
    """Uploads a build to a dataset repo shard by shard, in a background thread.

    The build thread only enqueues (`on_seal` never blocks, never raises for the Hub), so a
    slow or failing Hub never slows the build. Every commit brings the repo in line with the
    local sealed shards: lacking shards first, then the card and manifest that describe them,
    and stale shard names (the total grew when --n grew) deleted in the same commit. What is
    still unsent is retried by `finish` and reported. Only the driver process uploads, which is
    why it works the same with --workers and --ray.
    """

    def __init__(self, out: Path, repo_id: str, *, private: bool = False, client=None, manifest: dict | None = None,
                 retries: int = 4, backoff: float = 2.0, max_backoff: float = 120.0, min_interval: float = 30.0):
        self.out, self.repo_id, self.private = Path(out), repo_id, private
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        # Seals that arrive within min_interval of the last commit share the next one: the Hub
        # limits commits per repo per hour, and a tiny --shard-size must not hit that limit.
        self.min_interval = min_interval
        self._client = client
        self._manifest = manifest
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._remote: dict[str, int] = {}  # path -> size on the repo (as listed, or as we sent it)
        self._sent_sig: dict[str, tuple[int, int]] = {}  # path -> (size, mtime) of the local file sent
        self._sent: list[str] = []
        self._deleted: list[str] = []
        self._error: CorpusforgeError | None = None
        self._thread: threading.Thread | None = None
        self._finishing = threading.Event()
        self._abandon = threading.Event()
        self._last_commit = float("-inf")
        self.url: str | None = None

    # ----- called by the build driver ----------------------------------------------------

    def start(self, queue_lacking: bool = True) -> None:
        """Check token, offline mode and the repo's layout (raising CorpusforgeError), create the
        repo, list it once, and queue every local sealed file it lacks (unless `queue_lacking`
        is off: `push` sends everything from `finish`)."""
        check_repo_id(self.repo_id)
        client = self._client = self._client or HubClient()
        try:
            client.check()
            self.url = client.create_repo(self.repo_id, private=self.private)
            remote = dict(client.list_files(self.repo_id))
            self._check_layout(client, remote)
        except Exception as e:
            raise hub_error(e, self.repo_id, self._token()) from None
        self._remote = remote
        self._thread = threading.Thread(target=self._run, name="corpusforge-hub", daemon=True)
        self._thread.start()
        with self._lock:
            behind = self._lacking_shards() or self._stale()
        if behind and queue_lacking:
            self._queue.put([])  # a resumed build: send what the repo lacks

    def on_seal(self, files: list[Path]) -> None:
        """Queue one commit: these shard files, then the card and manifest. Returns at once."""
        if self._thread is not None:
            self._queue.put([Path(f) for f in files])

    def finish(self, timeout: float | None = None) -> PushReport:
        """Send what is still unsent (with retries), wait up to `timeout` s, and report. Never raises
        for upload failures."""
        if self._thread is not None:
            self._finishing.set()
            self._queue.put(_STOP)
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._abandon.set()  # stops at its next step; what it had not sent is reported
        return self.report()

    def unsent(self) -> list[str]:
        """Paths in the repo of local files it does not have yet (or an older version of)."""
        with self._lock:
            return [rel for rel, _ in self._lacking_shards() + self._lacking_cards()]

    def report(self) -> PushReport:
        unsent = self.unsent()
        with self._lock:
            return PushReport(self.repo_id, self.out, list(self._sent), unsent, list(self._deleted),
                              self._error if unsent else None)

    # ----- the repo's state ----------------------------------------------------------------

    def _token(self) -> str | None:
        return getattr(self._client, "token", None)

    def _check_layout(self, client, remote: dict[str, int]) -> None:
        """Refuse a repo that holds files we did not write, or another corpusforge build."""
        foreign = sorted(p for p in remote if not (_SHARD.match(p) or _OURS.match(p)))
        fix = "push to a new repo name, or delete those files on the Hub first"
        if foreign:
            more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
            raise CorpusforgeError(f"{self.repo_id} already holds files corpusforge does not write: {', '.join(foreign[:3])}{more}", fix)
        data = [p for p in remote if _SHARD.match(p) or p == "stats.json"]
        if data and MANIFEST not in remote:
            raise CorpusforgeError(f"{self.repo_id} already holds a dataset that corpusforge did not build (no {MANIFEST})", fix)
        if MANIFEST not in remote:
            return
        mine = self._manifest
        if mine is None and (self.out / MANIFEST).is_file():
            mine = read_manifest(self.out)
        if mine is None:
            return
        try:
            theirs = json.loads(client.read_text(self.repo_id, MANIFEST))
        except ValueError:
            raise CorpusforgeError(f"{self.repo_id} holds an unreadable {MANIFEST}", fix) from None
        if not isinstance(theirs, dict) or theirs.get("fingerprint") != mine.get("fingerprint"):
            raise CorpusforgeError(
                f"{self.repo_id} holds another corpusforge build (its {MANIFEST} has other settings)",
                "push to a new repo name, or delete its files on the Hub first",
            )

    def _lacking_shards(self) -> list[tuple[str, Path]]:
        """Local sealed shards the repo lacks: never sent, or changed since (a reopened shard)."""
        out = []
        for rel, path in _local_shards(self.out):
            sig = _signature(path)
            if sig is None:
                continue
            if rel in self._sent_sig:
                if self._sent_sig[rel] != sig:
                    out.append((rel, path))
            elif self._remote.get(rel) != sig[0]:
                out.append((rel, path))
        return out

    def _lacking_cards(self) -> list[tuple[str, Path]]:
        # The card changes with every seal, often keeping its size, so it counts as sent only
        # when this sink sent exactly this version of it.
        return [(rel, p) for rel, p in _local_cards(self.out) if self._sent_sig.get(rel) != _signature(p)]

    def _stale(self) -> list[str]:
        """Shard names on the repo that no longer exist locally (renamed when the total grew)."""
        return sorted(p for p in self._remote if _SHARD.match(p) and not (self.out / p).is_file())

    # ----- the upload thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            jobs = [self._queue.get()]
            wait = self._last_commit + self.min_interval - time.monotonic()
            if wait > 0 and jobs[0] is not _STOP:
                self._finishing.wait(wait)
            while True:  # everything queued meanwhile goes into the same commit
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(j is _STOP for j in jobs)
            requested = [f for j in jobs if j is not _STOP for f in j]
            self._sync(requested)
            if stop or self._abandon.is_set():
                return

    def _sync(self, requested: list[Path]) -> None:
        """Commit until the repo matches the local build, retrying with exponential back-off."""
        for attempt in range(self.retries + 1):
            if self._abandon.is_set():
                return
            try:
                self._commit_all(requested)
                with self._lock:
                    self._error = None
                return
            except Exception as e:
                err = hub_error(e, self.repo_id, self._token())
                with self._lock:
                    self._error = err
                if _permanent(e) or attempt == self.retries:
                    return
                delay = _retry_after(e) or min(self.max_backoff, self.backoff * 2 ** attempt)
                if self._abandon.wait(delay):
                    return

    def _commit_all(self, requested: list[Path]) -> None:
        with self._lock:
            lacking = self._lacking_shards()
            stale = self._stale()
            cards = self._lacking_cards()
        if not lacking and not stale and not cards:
            return
        # The shards this seal named first, then any other shard the repo lacks, in name order.
        wanted = {Path(f).resolve() for f in requested}
        lacking.sort(key=lambda rp: (rp[1].resolve() not in wanted, rp[0]))
        cards = _local_cards(self.out)  # the card goes with any change: it counts the rows
        batches = [lacking[i:i + MAX_FILES_PER_COMMIT] for i in range(0, len(lacking), MAX_FILES_PER_COMMIT)] or [[]]
        if len(batches[-1]) + len(cards) + len(stale) > MAX_FILES_PER_COMMIT:
            batches.append([])
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            files = batch + (cards if last else [])
            self._commit(files, stale if last else [])

    def _commit(self, files: list[tuple[str, Path]], delete: list[str]) -> None:
        add, sigs = [], {}
        for rel, path in files:
            sig = _signature(path)  # taken before reading, so a later rewrite counts as a change
            if sig is None:
                continue
            # Small files are read now so that one version of each goes up, even if the build
            # rewrites the card while the commit is in flight; shards are immutable once named.
            data = path.read_bytes() if not _SHARD.match(rel) else path
            add.append((rel, data))
            sigs[rel] = sig
        names = [rel.rsplit("/", 1)[-1] for rel, _ in add if _SHARD.match(rel)]
        message = "corpusforge: " + (f"add {', '.join(names[:3])}" + (f" and {len(names) - 3} more" if len(names) > 3 else "")
                                     if names else "update the card")
        self._client.commit(self.repo_id, add, delete, message)
        self._last_commit = time.monotonic()
        with self._lock:
            for rel, _ in add:
                self._sent_sig[rel] = sigs[rel]
                self._remote[rel] = sigs[rel][0]
                if rel not in self._sent:
                    self._sent.append(rel)
            for rel in delete:
                self._remote.pop(rel, None)
                self._deleted.append(rel)


def push(out: Path, repo_id: str, *, private: bool = False, partial: bool = False, client=None,
         retries: int = 3, backoff: float = 2.0) -> PushReport:
    """Upload a build folder to a dataset repo (resuming: files already there are skipped).

    An unfinished build is refused unless `partial`; then the card says how far it got."""
    check_repo_id(repo_id)
    out = Path(out)
    manifest = read_manifest(out)
    done, n, journals = build_progress(out, manifest)
    if done < n or journals:
        if not partial:
            raise CorpusforgeError(
                f"{out} is an unfinished build: {done:,} of {n:,} stories done" + (", journals still open" if journals else ""),
                "finish it by running the same `corpusforge build` again, or pass --partial to push it as it is",
            )
        from .card import write_card

        write_card(out, manifest, partial=(done, n))
    if not (out / "README.md").is_file():
        raise CorpusforgeError(f"{out} has no README.md", "run the same `corpusforge build` again; it writes the card")
    sink = HubSink(out, repo_id, private=private, client=client, manifest=manifest, retries=retries, backoff=backoff,
                   min_interval=0.0)
    sink.start(queue_lacking=False)
    report = sink.finish()
    if report.unsent:
        raise report.error or CorpusforgeError(f"{len(report.unsent)} files were not sent to {repo_id}", "push again")
    return report
