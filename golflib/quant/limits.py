"""Bounds on what an artifact may make golflib allocate, and the checks of the tensors it declares (issue 16).

Artifacts are files people download from pull requests, so a file is checked against its own headers before any
large allocation:

* **An element budget from the file size.** An artifact of ``B`` bytes may declare at most
  ``max(MIN_ELEMENTS, ELEMENTS_PER_BYTE · B)`` tensor elements, stored and logical (the model it describes). 16
  elements per byte is an average of 0.5 bits per parameter — trained weights take 2 to 8 (the 600-second records
  store ≈36M parameters in ≈16 MB: 2.3 per byte), and even an untrained export with zero projections stays near 4
  (docs/LOG.md) — while a 1 KB file can no longer claim a 15.8 GiB tensor.
* **Declared sizes before decompressing.** A safetensors payload is decompressed in two steps: its 8-byte length and
  header first (at most :data:`MAX_SAFETENSORS_HEADER` bytes), then exactly the bytes that header's tensors need —
  a stream that would give one byte more is a decompression bomb and is stopped there
  (:func:`golflib.quant.codecs.decompress_bounded`). A range-coded section's symbol count is the product of its
  declared shape, which must equal the code matrix of the tensor it names.
* **Strict tensors.** Every tensor of the metadata has a known kind and dtype, a shape of whole non-negative
  numbers, and exactly the storage tensors its kind needs, with the right dtypes, element counts, codes within its
  bit width, and finite values; no storage tensor belongs to no declared tensor.

Every failure is an :class:`ArtifactError` (a :class:`~golflib.errors.GolfError`) naming the file and the tensor or
field.
"""

from __future__ import annotations

import math
import struct

import torch

from golflib.errors import GolfError, parse_json

MIN_ELEMENTS = 1 << 22  # any artifact may declare 4,194,304 elements (16 MB as float32)
ELEMENTS_PER_BYTE = 16  # beyond that, 16 declared elements per file byte (0.5 bits per element)
MAX_SAFETENSORS_HEADER = 8 << 20  # bytes of a safetensors JSON header
MAX_HEADER_JSON = 8 << 20  # bytes of a version-2 container's decompressed JSON header
MAX_NDIM = 8

DTYPES: dict[str, torch.dtype] = {  # metadata dtype names (torch's, without "torch.")
    "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64,
    "int64": torch.int64, "int32": torch.int32, "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8,
    "bool": torch.bool,
}
ST_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
KINDS = ("passthrough", "per_row", "per_tensor")
SCALE_DTYPES = (torch.float16, torch.float32, torch.bfloat16)
LQER_PARTS = ("a.q", "a.scale", "b.q", "b.scale")


class ArtifactError(GolfError):
    """The file is not a valid golflib artifact: foreign or corrupt bytes, a header that does not match its data, a
    size beyond what the file can hold, a tensor without its storage or with non-finite values (the message names
    the file and the tensor or field). Re-exported by :mod:`golflib.quant.artifact` and :mod:`golflib.quant`."""


def element_budget(file_bytes: int) -> int:
    """Tensor elements an artifact of ``file_bytes`` bytes may declare (module docstring)."""
    return max(MIN_ELEMENTS, ELEMENTS_PER_BYTE * int(file_bytes))


class ElementBudget:
    """Elements still allowed to be decoded from one artifact; :meth:`take` charges a tensor before it is
    allocated."""

    def __init__(self, file_bytes: int, source: str):
        self.total = self.left = element_budget(file_bytes)
        self.file_bytes, self.source = int(file_bytes), source

    def take(self, n: int, what: str) -> None:
        """Charge ``n`` elements for ``what``; raises :class:`ArtifactError` past the budget."""
        if n > self.left:
            raise ArtifactError(
                f"{self.source}: {what} declares {n:,} elements, more than the {self.total:,} a "
                f"{self.file_bytes:,}-byte artifact may hold (at most {ELEMENTS_PER_BYTE} per byte, or "
                f"{MIN_ELEMENTS:,}); the header is corrupt or hostile")
        self.left -= n


def shape_numel(shape, where: str) -> int:
    """Element count of a declared shape (a list of at most :data:`MAX_NDIM` whole numbers >= 0); raises
    :class:`ArtifactError` naming ``where``."""
    if not isinstance(shape, (list, tuple)) or len(shape) > MAX_NDIM or \
            any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape):
        raise ArtifactError(f"{where}: shape {str(shape)[:80]} is not a list of at most {MAX_NDIM} whole numbers >= 0")
    return math.prod(shape)


def check_meta(meta, source: str, budget: ElementBudget) -> dict:
    """Check the metadata's per-tensor table (module docstring) and that the tensors it declares fit ``budget``
    (not charged: the logical size is bounded, the storage is charged as it is decoded). Returns ``meta``."""
    from golflib.quant.int8 import FORMAT

    if not isinstance(meta, dict) or not isinstance(meta.get("tensors"), dict):
        raise ArtifactError(f"{source}: metadata lacks the per-tensor table ('tensors')")
    if meta.get("format") != FORMAT:
        raise ArtifactError(f"{source}: metadata format {meta.get('format')!r}, expected {FORMAT!r}")
    total = 0
    for name, e in meta["tensors"].items():
        where = f"{source}: tensor {name!r}"
        if not isinstance(e, dict):
            raise ArtifactError(f"{where}: metadata entry is {type(e).__name__}, expected an object")
        for key in ("kind", "dtype", "shape"):
            if key not in e:
                raise ArtifactError(f"{where}: metadata lacks {key!r}")
        if not isinstance(e["kind"], str) or e["kind"] not in KINDS:
            raise ArtifactError(f"{where}: unknown quantization kind {e['kind']!r}; expected one of {KINDS}")
        if not isinstance(e["dtype"], str) or e["dtype"] not in DTYPES:
            raise ArtifactError(f"{where}: unknown dtype {e['dtype']!r}; expected one of {sorted(DTYPES)}")
        total += shape_numel(e["shape"], where)
        if e["kind"] != "passthrough":
            bits = e.get("bits")
            if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
                raise ArtifactError(f"{where}: bits {bits!r}, expected a whole number in [2, 8]")
            if not DTYPES[e["dtype"]].is_floating_point:
                raise ArtifactError(f"{where}: a quantized tensor with integer dtype {e['dtype']!r}")
        if "lqer" in e and (e["kind"] != "per_row" or not isinstance(e["lqer"], dict)
                            or not isinstance(e["lqer"].get("group", 64), int) or e["lqer"].get("group", 64) < 1):
            raise ArtifactError(f"{where}: malformed 'lqer' entry {str(e['lqer'])[:80]}")
    if total > budget.total:
        raise ArtifactError(f"{source}: the metadata declares {total:,} tensor elements, more than the "
                            f"{budget.total:,} a {budget.file_bytes:,}-byte artifact may hold")
    return meta


def safetensors_index(head: bytes, source: str, budget: ElementBudget) -> tuple[int, dict, int]:
    """Parse and check the header of a safetensors payload from its first bytes ``head`` (at least
    ``8 + header length``), charging its tensors to ``budget``. Returns ``(header length, header dict,
    data bytes)``; the payload must be exactly ``8 + header length + data bytes`` long."""
    if len(head) < 8:
        raise ArtifactError(f"{source}: payload too short for a safetensors header")
    (hlen,) = struct.unpack("<Q", head[:8])
    if hlen > MAX_SAFETENSORS_HEADER:
        raise ArtifactError(f"{source}: safetensors header of {hlen:,} bytes (at most {MAX_SAFETENSORS_HEADER:,})")
    if len(head) < 8 + hlen:
        raise ArtifactError(f"{source}: payload ends inside its safetensors header")
    header = parse_json(head[8:8 + hlen], f"{source} safetensors header", ArtifactError)
    if not isinstance(header, dict):
        raise ArtifactError(f"{source}: safetensors header is not a JSON object")
    spans = []
    for name, t in header.items():
        if name == "__metadata__":
            if not isinstance(t, dict) or not all(isinstance(v, str) for v in t.values()):
                raise ArtifactError(f"{source}: safetensors __metadata__ must map names to strings")
            continue
        where = f"{source}: stored tensor {name!r}"
        if not isinstance(t, dict) or t.get("dtype") not in ST_ITEMSIZE:
            raise ArtifactError(f"{where}: dtype {str(t.get('dtype') if isinstance(t, dict) else t)[:20]!r}, "
                                f"expected one of {sorted(ST_ITEMSIZE)}")
        n = shape_numel(t.get("shape"), where)
        off = t.get("data_offsets")
        if not isinstance(off, list) or len(off) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 0
                                                             for v in off) or off[0] > off[1]:
            raise ArtifactError(f"{where}: data_offsets {str(off)[:40]} are not [begin, end] with begin <= end")
        if off[1] - off[0] != n * ST_ITEMSIZE[t["dtype"]]:
            raise ArtifactError(f"{where}: shape {t['shape']} of {t['dtype']} needs {n * ST_ITEMSIZE[t['dtype']]:,} "
                                f"bytes, its offsets span {off[1] - off[0]:,}")
        budget.take(n, f"stored tensor {name!r}")
        spans.append((off[0], off[1], name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise ArtifactError(f"{source}: stored tensor {name!r} starts at byte {begin:,}, expected {end:,} "
                                "(overlapping or gapped tensor data)")
        end = stop
    return hlen, header, end


def check_storage(tensors: dict[str, torch.Tensor], meta: dict, source: str) -> None:
    """Check that every declared tensor has exactly the storage its kind needs (module docstring) and that every
    stored float is finite. Raises :class:`ArtifactError` naming the tensor."""
    from golflib.quant.artifact import storage_owner

    table = meta["tensors"]
    for sname in tensors:
        if storage_owner(sname, table) not in table:
            raise ArtifactError(f"{source}: stored tensor {sname!r} belongs to no tensor of the metadata")
    for name, e in table.items():
        where = f"{source}: tensor {name!r}"
        numel = math.prod(e["shape"])

        def get(key: str, dtypes, n: int | None = None) -> torch.Tensor:
            t = tensors.get(key)
            if t is None:
                raise ArtifactError(f"{where}: storage tensor {key!r} missing from the artifact")
            if t.dtype not in dtypes:
                raise ArtifactError(f"{where}: storage tensor {key!r} is {str(t.dtype).removeprefix('torch.')}, "
                                    f"expected {' or '.join(str(d).removeprefix('torch.') for d in dtypes)}")
            if n is not None and t.numel() != n:
                raise ArtifactError(f"{where}: storage tensor {key!r} has {t.numel():,} elements, the declared "
                                    f"shape {e['shape']} needs {n:,}")
            if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
                raise ArtifactError(f"{where}: storage tensor {key!r} holds non-finite values (NaN or inf)")
            return t

        if e["kind"] == "passthrough":
            t = get(name, tuple(DTYPES.values()), numel)
            stored = str(t.dtype).removeprefix("torch.")
            if e.get("store", stored) != stored or e.get("bits", t.element_size() * 8) != t.element_size() * 8:
                raise ArtifactError(f"{where}: stored as {stored} ({t.element_size() * 8} bits), the metadata says "
                                    f"{e.get('store')!r} ({e.get('bits')!r} bits)")
            continue
        q = get(name + ".q", (torch.int8,), numel)
        lim = 1 << (int(e["bits"]) - 1)
        if q.numel() and int(q.abs().max()) > lim:
            raise ArtifactError(f"{where}: codes up to ±{int(q.abs().max())} do not fit {e['bits']} bits "
                                f"(at most ±{lim})")
        if e["kind"] == "per_tensor":
            get(name + ".scale", SCALE_DTYPES, 1)
            continue
        rows = e["shape"][0] if e["shape"] else 1
        if q.ndim < 1 or q.shape[0] != rows:
            raise ArtifactError(f"{where}: codes of shape {list(q.shape)} for a tensor of {rows} rows")
        get(name + ".scale", SCALE_DTYPES, rows)
        if "lqer" in e:
            cols = numel // max(rows, 1)
            qa = get(f"{name}.lqer.a.q", (torch.int8,))
            qb = get(f"{name}.lqer.b.q", (torch.int8,))
            get(f"{name}.lqer.a.scale", SCALE_DTYPES)
            get(f"{name}.lqer.b.scale", SCALE_DTYPES)
            if qa.ndim != 2 or qb.ndim != 2 or qa.shape[0] != rows or qb.shape[1] != cols or \
                    qa.shape[1] != qb.shape[0] or qa.shape[1] > min(rows, cols):
                raise ArtifactError(f"{where}: LQER factors of shapes {list(qa.shape)} and {list(qb.shape)} do not "
                                    f"make a rank <= {min(rows, cols)} product of shape [{rows}, {cols}]")
