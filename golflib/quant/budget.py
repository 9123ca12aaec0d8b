"""The 16,000,000-byte budget: code bytes + artifact bytes, per tensor class (SPEC §0, §5.5, trap 7).

:func:`artifact_budget` breaks an artifact's bytes down by tensor class. For a version-2 (entropy) artifact the
numbers are exact: every section belongs to one class, and the header is reported on its own line. For a
version-1 artifact the file is one compressed stream, so per-class bytes are *standalone estimates* (each class's
storage tensors compressed alone with the artifact's codec) and ``exact`` is False; the total is always the real
file size. All sizes are decimal bytes.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from golflib.quant.artifact import MAGIC, _safetensors_bytes, decode_artifact, read_sections, storage_owner
from golflib.quant.classes import CLASSES, entry_class
from golflib.quant.codecs import compress
from golflib.quant.prune import SIZE_LIMIT, check_code_bytes, parse_limit


def _params_by_class(meta: dict) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, e in meta["tensors"].items():
        out[entry_class(name, e)] = out.get(entry_class(name, e), 0) + int(math.prod(e.get("shape", [])) or 1)
    return out


def artifact_budget(blob: bytes, source: str = "<bytes>") -> dict:
    """``{"artifact_bytes", "exact", "codec", "scheme", "classes": {cls: {"bytes", "params", "bits_per_param"}},
    "header_bytes"}`` for container bytes ``blob`` (raises :class:`~golflib.quant.artifact.ArtifactError` for a
    foreign or corrupt file)."""
    qs = decode_artifact(blob, source)  # validates everything, including CRCs and decodability
    meta = qs.meta
    params = _params_by_class(meta)
    by_class: dict[str, int] = {}
    if blob[4] == 2:
        header, sections = read_sections(blob, source)
        for s, data in sections:
            by_class[s["class"]] = by_class.get(s["class"], 0) + len(data)
        header_bytes = len(blob) - sum(len(d) for _, d in sections)
        exact = True
    else:
        groups: dict[str, dict] = {}
        for sname, t in qs.tensors.items():
            owner = storage_owner(sname, meta["tensors"])
            groups.setdefault(entry_class(owner, meta["tensors"].get(owner, {})), {})[sname] = t.contiguous()
        for cls, tensors in groups.items():
            by_class[cls] = len(compress(_safetensors_bytes(tensors), meta.get("codec", "zlib")))
        header_bytes = len(blob) - sum(by_class.values())  # metadata + codec overhead (can be < 0 for estimates)
        exact = False
    classes = {}
    for cls in [c for c in CLASSES if c in by_class or c in params]:
        n, p = by_class.get(cls, 0), params.get(cls, 0)
        classes[cls] = {"bytes": n, "params": p, "bits_per_param": round(8 * n / p, 4) if p else None}
    return {"artifact_bytes": len(blob), "exact": exact, "codec": meta.get("codec"), "scheme": meta.get("scheme"),
            "classes": classes, "header_bytes": header_bytes}


def budget_report(artifact: str | os.PathLike, code_bytes: int, limit: int | str = SIZE_LIMIT) -> dict:
    """Budget of one artifact file: :func:`artifact_budget` plus ``code_bytes``, ``bytes_total``, ``limit``,
    ``under_limit`` (strictly below, like the challenge's check) and ``headroom``. ``limit`` is decimal
    (``"15.9MB"`` ok, ``"15.9MiB"`` refused). Raises :class:`~golflib.errors.BudgetError` for a limit above
    16,000,000 or negative ``code_bytes``."""
    limit = parse_limit(limit)
    code_bytes = check_code_bytes(code_bytes)
    path = Path(artifact)
    blob = path.read_bytes()
    out = {"artifact": str(path), **artifact_budget(blob, str(path)), "code_bytes": int(code_bytes)}
    out["bytes_total"] = out["artifact_bytes"] + out["code_bytes"]
    out["limit"] = limit
    out["under_limit"] = out["bytes_total"] < limit
    out["headroom"] = limit - out["bytes_total"]
    return out


def is_artifact_file(path: str | os.PathLike) -> bool:
    """True when the file starts with the golflib magic."""
    with open(path, "rb") as fh:
        return fh.read(4) == MAGIC
