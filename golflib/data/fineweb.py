"""Manifest-driven FineWeb downloader from the Hugging Face hub (SPEC §1.5).

Remote (dataset repo, default ``willdepueoai/parameter-golf``, root prefix ``datasets``)::

    <root>/manifest.json
    <root>/datasets/<dataset>/fineweb_{val,train}_NNNNNN.bin   (+ fineweb_val_bytes_NNNNNN.bin for CaseOps)
    <root>/tokenizers/<files listed in the manifest>

Local: the same paths with the root prefix stripped, under ``data/``. Algorithm: read the remote manifest (or the
local copy with ``skip_manifest``), find ``fineweb10B_<variant>``, refuse more train shards than ``stats.files_train``,
download all val shards, the first N train shards, the tokenizer files and any byte sidecars with
``hf_hub_download``, resolve the cache symlink and hard-link (fallback: copy) into place, skipping files that
exist. The local manifest records which repo each dataset came from, so a stale ``data/manifest.json`` from another
repo (SPEC §1.5 ⚠, trap 10) is refused instead of silently reused.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from golflib.errors import GolfError, ManifestError, parse_json

DEFAULT_REPO_ID = "willdepueoai/parameter-golf"
DEFAULT_REMOTE_ROOT = "datasets"
VARIANT_DATASETS = {"byte260": "fineweb10B_byte260"}


class StaleManifestError(GolfError):
    """The local manifest describes this dataset from another source than the one requested."""


def dataset_name_for(variant: str) -> str:
    """``sp1024`` → ``fineweb10B_sp1024``; names that already start with ``fineweb`` pass through."""
    return variant if variant.startswith("fineweb") else VARIANT_DATASETS.get(variant, f"fineweb10B_{variant}")


def _hub_get(repo_id: str, remote_path: str, endpoint: str | None, cache_dir: str | None,
             download: Callable[..., str] | None) -> Path:
    if download is None:
        from huggingface_hub import hf_hub_download as download
    p = Path(remote_path)
    kwargs: dict[str, Any] = {"repo_id": repo_id, "filename": p.name, "repo_type": "dataset"}
    if p.parent != Path("."):
        kwargs["subfolder"] = p.parent.as_posix()
    if endpoint:
        kwargs["endpoint"] = endpoint
    if cache_dir:
        kwargs["cache_dir"] = cache_dir
    return Path(download(**kwargs))


def _materialize(cached: Path, dest: Path) -> None:
    """Hard-link the real blob behind a (possibly symlinked) cache entry into ``dest``; copy across devices."""
    source = cached.resolve(strict=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copy2(source, tmp)
    os.replace(tmp, dest)


def _source_tag(repo_id: str, remote_root: str) -> dict[str, str]:
    return {"repo_id": repo_id, "remote_root": remote_root}


def fetch_fineweb(variant: str = "sp1024", train_shards: int = 80, root: str | os.PathLike = "data", *,
                  repo_id: str | None = None, remote_root: str | None = None, skip_manifest: bool = False,
                  refresh_manifest: bool = False, endpoint: str | None = None, cache_dir: str | None = None,
                  download: Callable[..., str] | None = None, echo: Callable[[str], None] | None = print) -> dict:
    """Download a FineWeb variant into ``root``; returns ``{"dataset", "downloaded", "skipped", "files"}``.

    ``repo_id``/``remote_root`` default to the env vars ``MATCHED_FINEWEB_REPO_ID`` /
    ``MATCHED_FINEWEB_REMOTE_ROOT_PREFIX`` or the official repo. ``download`` replaces ``hf_hub_download`` (same
    keyword arguments) and ``endpoint`` points the hub client at another server (both used by the offline test).
    Raises ``ValueError`` for a negative or too large ``train_shards`` or an unknown dataset,
    :class:`StaleManifestError` when ``data/manifest.json`` describes the dataset from another repo (pass
    ``refresh_manifest=True`` to replace it).
    """
    repo_id = repo_id or os.environ.get("MATCHED_FINEWEB_REPO_ID", DEFAULT_REPO_ID)
    remote_root = remote_root if remote_root is not None else os.environ.get("MATCHED_FINEWEB_REMOTE_ROOT_PREFIX",
                                                                               DEFAULT_REMOTE_ROOT)
    if train_shards < 0:
        raise ValueError(f"--train-shards={train_shards}: must be >= 0")
    root = Path(root)
    name = dataset_name_for(variant)
    local_path = root / "manifest.json"
    local = parse_json(local_path.read_bytes(), str(local_path), ManifestError) if local_path.is_file() else None
    if local is not None and not isinstance(local, dict):
        raise ManifestError(f"{local_path}: expected a JSON object")
    want = _source_tag(repo_id, remote_root)
    rp = (lambda rel: f"{remote_root}/{rel}" if remote_root else rel)  # noqa: E731
    say = echo or (lambda _m: None)

    if local is not None and not refresh_manifest:
        entry = next((d for d in local.get("datasets", []) if d.get("name") == name), None)
        src = (entry or {}).get("fetched_from")
        if entry is not None and src is not None and src != want:
            raise StaleManifestError(
                f"{local_path} lists {name} from {src['repo_id']}/{src['remote_root']}, but {repo_id}/{remote_root} "
                "was requested; the cached manifest is stale for this repo. Delete it or pass --refresh-manifest.")
    if skip_manifest:
        if local is None:
            raise FileNotFoundError(f"{local_path}: --skip-manifest needs a local manifest")
        remote = local
    else:
        cached = _hub_get(repo_id, rp("manifest.json"), endpoint, cache_dir, download)
        remote = parse_json(cached.resolve(strict=True).read_bytes(), f"{repo_id}:{rp('manifest.json')}", ManifestError)
        if not isinstance(remote, dict):
            raise ManifestError(f"{repo_id}:{rp('manifest.json')}: expected a JSON object")
        if local is not None and not refresh_manifest:
            old = next((d for d in local.get("datasets", []) if d.get("name") == name), None)
            new = next((d for d in remote.get("datasets", []) if d.get("name") == name), None)
            if old is not None and new is not None and old.get("fetched_from") is None \
                    and old.get("stats") != new.get("stats"):
                raise StaleManifestError(
                    f"{local_path} describes {name} with stats {old.get('stats')} but {repo_id} has "
                    f"{new.get('stats')}; the cached manifest came from another export. Delete it or pass "
                    "--refresh-manifest.")

    entry = next((d for d in remote.get("datasets", []) if d.get("name") == name), None)
    if entry is None:
        names = [d.get("name") for d in remote.get("datasets", [])]
        raise ValueError(f"dataset {name} not found in the manifest of {repo_id}/{remote_root} (has: {names})")
    stats = entry.get("stats") or {}
    files_val, files_train = int(stats.get("files_val", 0)), int(stats.get("files_train", 0))
    if train_shards > files_train:
        raise ValueError(f"{variant} only has {files_train} training shards on {repo_id}, requested {train_shards}")
    tok = next((t for t in remote.get("tokenizers", []) if t.get("name") == entry.get("tokenizer_name")), None)
    if tok is None:
        raise ValueError(f"tokenizer {entry.get('tokenizer_name')} of {name} not in the manifest of {repo_id}")

    ds_dir = entry.get("path", f"datasets/{name}")
    wanted = [f"{ds_dir}/fineweb_val_{i:06d}.bin" for i in range(files_val)]
    wanted += [f"{ds_dir}/fineweb_train_{i:06d}.bin" for i in range(train_shards)]
    if entry.get("val_bytes_glob"):
        wanted += [f"{ds_dir}/fineweb_val_bytes_{i:06d}.bin" for i in range(files_val)]
    wanted += [str(tok[k]) for k in ("model_path", "vocab_path", "path") if tok.get(k)]

    downloaded, skipped = [], []
    for rel in wanted:
        dest = root / rel
        if dest.exists():
            skipped.append(rel)
            continue
        if dest.is_symlink():  # a dangling link from an older layout
            dest.unlink()
        say(f"fetch {repo_id}:{rp(rel)}")
        _materialize(_hub_get(repo_id, rp(rel), endpoint, cache_dir, download), dest)
        downloaded.append(rel)

    merged = dict(local or {})
    for k, v in remote.items():
        if k not in ("datasets", "tokenizers"):
            merged[k] = v
    new_entry = dict(entry, fetched_from=want)
    merged["datasets"] = [d for d in (local or {}).get("datasets", []) if d.get("name") != name] + [new_entry]
    model_rel = tok.get("model_path") or tok.get("path")
    if model_rel and (root / str(model_rel)).is_file() and not tok.get("model_sha256"):
        from golflib.data.tokcheck import file_sha256

        tok = dict(tok, model_sha256=file_sha256(root / str(model_rel)))  # as fetched: later runs check against it
    merged["tokenizers"] = [t for t in (local or {}).get("tokenizers", []) if t.get("name") != tok["name"]] + [tok]
    root.mkdir(parents=True, exist_ok=True)
    tmp = local_path.with_name("manifest.json.tmp")
    tmp.write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, local_path)
    return {"dataset": name, "downloaded": downloaded, "skipped": skipped, "files": wanted}
