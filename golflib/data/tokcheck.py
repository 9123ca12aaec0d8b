"""The tokenizer a run scores with, checked against the data it scores (issue 16).

val_bpb divides by the bytes the tokenizer says each token spells, so a tokenizer other than the one the shards were
made with gives a wrong number without any error (a 512-piece tokenizer on 1024-vocab shards counts every id above
511 as 0 bytes: val_bpb 3.69 instead of 1.71). Before any scoring :func:`check_tokenizer` compares

* the tokenizer with the dataset's entry in its ``manifest.json`` (when the data folder has one, in the folder or up
  to three levels above it, as ``golf data prepare`` and ``golf data fetch`` write it): the file name, the vocab size
  and, when the manifest records it (``model_sha256``, written by both commands), the SHA-256 of the ``.model``
  file;
* the tokenizer with the val shards themselves: every token id must be one of its pieces.

Any difference is a :class:`~golflib.errors.TokenizerError` naming the tokenizer, the manifest or shard, and the
field.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from golflib.errors import ManifestError, TokenizerError, parse_json

MANIFEST_NAME = "manifest.json"
MANIFEST_SEARCH_LEVELS = 3


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(path: Path) -> dict:
    """Parse a ``manifest.json`` (:func:`~golflib.errors.parse_json`); raises :class:`~golflib.errors.ManifestError`
    naming it unless it is an object with a ``datasets`` list (the official schema)."""
    manifest = parse_json(path.read_bytes(), str(path), ManifestError)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("datasets"), list):
        raise ManifestError(f"{path}: expected an object with a 'datasets' list (official manifest schema)")
    return manifest


def manifest_entry(data_path: str | os.PathLike) -> tuple[Path, dict, dict] | None:
    """``(manifest path, dataset entry, tokenizer entry)`` of the manifest describing the shard folder
    ``data_path`` (an entry whose ``path`` resolves to it), or None when no manifest within
    :data:`MANIFEST_SEARCH_LEVELS` levels describes it. Raises :class:`~golflib.errors.ManifestError` for a
    manifest that is not a JSON object with a ``datasets`` list, and :class:`TokenizerError` when the dataset's
    tokenizer is not listed."""
    folder = Path(data_path).resolve()
    for root in [folder, *folder.parents][:MANIFEST_SEARCH_LEVELS + 1]:
        path = root / MANIFEST_NAME
        if not path.is_file():
            continue
        manifest = read_manifest(path)
        for entry in manifest["datasets"]:
            if isinstance(entry, dict) and isinstance(entry.get("path"), str) \
                    and (root / entry["path"]).resolve() == folder:
                tok = next((t for t in manifest.get("tokenizers", []) if isinstance(t, dict)
                            and t.get("name") == entry.get("tokenizer_name")), None)
                if tok is None:
                    raise TokenizerError(f"{path}: dataset {entry.get('name')!r} names tokenizer "
                                         f"{entry.get('tokenizer_name')!r}, which the manifest does not list")
                return path, entry, tok
    return None


def check_tokenizer(data, sp, val_glob: str | None = None) -> dict:
    """Check the SentencePiece processor ``sp`` loaded from ``data.tokenizer_path`` (a
    :class:`golflib.settings.training.DataConfig`) against the manifest entry of ``data.data_path`` and against the
    val shards (``val_glob``, default ``data.val_glob``). Returns what was checked: ``{"manifest": path | None,
    "sha256": bool, "max_id": int}``. Raises :class:`TokenizerError`."""
    from golflib.data.shards import list_shards, load_shard

    tok_path = Path(data.tokenizer_path)
    n_pieces = int(sp.vocab_size())
    found = manifest_entry(data.data_path)
    checked = {"manifest": None, "sha256": False, "max_id": -1}
    if found is not None:
        mpath, entry, tok = found
        where = f"{tok_path}: tokenizer does not match {mpath} (dataset {entry.get('name')!r})"
        listed = Path(str(tok.get("model_path") or tok.get("path") or "")).name
        if listed and tok_path.name != listed:
            raise TokenizerError(f"{where}: file name {tok_path.name!r}, the manifest lists {listed!r}")
        for field, want in (("vocab_size", tok.get("vocab_size")), ("dataset vocab_size", entry.get("vocab_size"))):
            if want is not None and (isinstance(want, bool) or not isinstance(want, int)):
                raise ManifestError(f"{mpath}: {field} {str(want)[:40]!r} is not a whole number")
            if want is not None and want != n_pieces:
                raise TokenizerError(f"{where}: {n_pieces} pieces, the manifest's {field} is {want}")
        if tok.get("model_sha256") is not None:
            if not isinstance(tok["model_sha256"], str):
                raise ManifestError(f"{mpath}: model_sha256 {str(tok['model_sha256'])[:40]!r} is not a hex string")
            digest = file_sha256(tok_path)
            if digest != tok["model_sha256"]:
                raise TokenizerError(f"{where}: SHA-256 {digest[:16]}…, the manifest records "
                                     f"{str(tok['model_sha256'])[:16]}… (another tokenizer with the same name)")
            checked["sha256"] = True
        checked["manifest"] = str(mpath)
    for shard in list_shards(val_glob or data.val_glob):
        tokens = load_shard(shard)
        top = int(tokens.max()) if tokens.size else -1
        if top >= n_pieces:
            raise TokenizerError(f"{tok_path}: {n_pieces} pieces, but {shard} holds token id {top}: the shards were "
                                 "made with another (larger) tokenizer; their bytes would be miscounted")
        checked["max_id"] = max(checked["max_id"], top)
    return checked

