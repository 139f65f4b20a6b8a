"""Hugging Face Hub: resolve `hf://owner/repo/file.gguf` models, push finished shards.

Downloads go through huggingface_hub's cache (resumable, with progress); offline or missing
files become one-line errors that say how to pass a local file instead.
"""
from __future__ import annotations

from pathlib import Path

from .errors import CorpusforgeError, ModelError

HF_PREFIX = "hf://"


def parse_hf(spec: str) -> tuple[str, str, str | None]:
    """`hf://owner/repo[@rev]/path/file.gguf` -> (repo_id, filename, revision)."""
    parts = spec[len(HF_PREFIX):].split("/", 2)
    if len(parts) < 3 or not all(parts):
        raise ModelError(f"bad model address {spec!r}", "write it as hf://owner/repo/file.gguf")
    owner, repo, filename = parts
    repo, _, revision = repo.partition("@")
    return f"{owner}/{repo}", filename, revision or None


def resolve_model(spec: str) -> Path:
    """A local GGUF path for `spec`, downloading hf:// addresses into the HF cache."""
    if spec.startswith(HF_PREFIX):
        path = _download(spec)
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ModelError(
                f"model file {path} not found",
                "pass --model PATH to a .gguf file or hf://owner/repo/file.gguf (`corpusforge tiny-model m.gguf` makes a test model)",
            )
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelError(f"{path} is not a GGUF file", "pass a .gguf model (convert others with llama.cpp's convert_hf_to_gguf.py)")
    return path


def _download(spec: str) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub import errors as hf_errors

    repo_id, filename, revision = parse_hf(spec)
    local = "download it elsewhere and pass --model /path/to/file.gguf"
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision))
    except hf_errors.LocalEntryNotFoundError:
        # Offline (HF_HUB_OFFLINE, or no network) and not in the cache yet. It subclasses
        # EntryNotFoundError, so it must be caught first.
        raise ModelError(f"cannot download {spec}: the Hub is unreachable or offline and it is not cached", local) from None
    except (hf_errors.RepositoryNotFoundError, hf_errors.RevisionNotFoundError) as e:
        raise ModelError(f"{spec}: no such repository or revision ({type(e).__name__})", "check owner/repo (private repos need HF_TOKEN)") from None
    except hf_errors.EntryNotFoundError:
        raise ModelError(f"{spec}: no file {filename!r} in {repo_id}", "check the file name on the repo's Files page") from None
    except hf_errors.OfflineModeIsEnabled:
        raise ModelError(f"cannot download {spec}: HF_HUB_OFFLINE is set", local) from None
    except Exception as e:  # network failures come as httpx/OS errors of many kinds
        raise ModelError(f"cannot download {spec}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", local) from None


def push(out: Path, repo_id: str, *, private: bool = False, token: str | None = None, endpoint: str | None = None) -> str:
    """Upload the card and the finished shards of `out` to a dataset repo; returns its URL."""
    from huggingface_hub import HfApi

    out = Path(out)
    if not (out / "README.md").is_file() or not (out / "data").is_dir():
        raise CorpusforgeError(f"{out} holds no finished corpus", "run `corpusforge build` first")
    api = HfApi(token=token, endpoint=endpoint)
    try:
        url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        # upload_folder splits big folders into several commits and skips files already there,
        # so re-running after a failure resumes.
        api.upload_folder(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=str(out),
            allow_patterns=["README.md", "data/*.parquet", "rejects/*.parquet"],
            commit_message="corpusforge: add shards",
        )
    except Exception as e:
        raise CorpusforgeError(
            f"push to {repo_id} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
            "check HF_TOKEN (or `hf auth login`) and the network, then run push again; finished files are skipped",
        ) from None
    return str(url)
