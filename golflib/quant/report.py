"""Measurements of a quantized state: bytes per codec and the order-0 bound per tensor class, and per-tensor
quantization error (SPEC §3.B12; used by ``golf bench quant``, ``golf quant`` and the quantization notebook).

Codecs compared on the same code symbols: each byte codec (zlib-9, zstd-22, lzma-9e, brotli-11) on one code per
byte (the records' int8 containers) and on bit-packed codes (:mod:`golflib.quant.bitpack`), and the context range
coder of :mod:`golflib.quant.entropy` (its exact section bytes). The order-0 bound of a tensor is
``Σ −log2 p̂(q)`` with ``p̂`` its own histogram, plus the bytes to transmit that histogram
(:func:`golflib.quant.entropy.order0_table_bits`); a class's bound is the sum over its tensors.
"""

from __future__ import annotations

import re
import time

import numpy as np
import torch

from golflib.quant import entropy
from golflib.quant.bitpack import pack
from golflib.quant.classes import entry_class
from golflib.quant.codecs import compress
from golflib.quant.int8 import QuantizedState, dequantize

BYTE_CODECS = ("zlib", "zstd", "lzma", "brotli")
# issue 19's side-by-side table: the byte codecs as records use them (zstd-22 #287 era, brotli-11, the byte shuffle +
# brotli of #1218 onward in the records' BSHF framing), #1855's per-group lrzip, the order-0 bound, golflib's coder
TABLE_CODECS = ("zstd", "brotli", "brotli+bshf2")


def code_tensors(qs: QuantizedState, classes: tuple[str, ...] | None = None) -> list[tuple[str, str, np.ndarray, int]]:
    """``[(name, class, codes [rows, cols] int8, bits)]`` of the per-row tensors (optionally only ``classes``),
    in metadata order."""
    out = []
    for name, e in qs.meta["tensors"].items():
        if e.get("kind") != "per_row":
            continue
        cls = entry_class(name, e)
        if classes is None or cls in classes:
            out.append((name, cls, qs.tensors[name + ".q"].numpy(), int(e["bits"])))
    return out


def coder_round_trip(items: list[tuple[str, str, np.ndarray, int]]) -> tuple[list[int], dict]:
    """Code ``items`` (as :func:`code_tensors`) in order with one adaptive state, as the artifact does, decode them
    again and compare. Returns each tensor's section bytes and ``{"encode", "decode"}`` seconds; raises
    ``AssertionError`` if a round trip fails (never expected; loud if it is)."""
    enc, dec = entropy.EntropyCoder(), entropy.EntropyCoder()
    t0 = time.perf_counter()
    coded = [(name, q, bits, *enc.encode(q, bits, entropy.kind_of(name, bits))) for name, _, q, bits in items]
    t1 = time.perf_counter()
    for name, q, bits, blob, info in coded:
        if not np.array_equal(dec.decode(blob, q.shape, bits, entropy.kind_of(name, bits), info["level"]), q):
            raise AssertionError(f"entropy coder round trip failed on {name}")
    seconds = {"encode": round(t1 - t0, 3), "decode": round(time.perf_counter() - t1, 3)}
    return [len(blob) for _, _, _, blob, _ in coded], seconds


def codec_bytes(items: list[tuple[str, str, np.ndarray, int]], *, byte_codecs=BYTE_CODECS,
                bitpacked: bool = True, pergroup: bool = False) -> dict:
    """Bytes of the codes in ``items`` under every codec, and the order-0 bound (module docstring).

    Returns ``{"symbols", "one_per_byte": {codec: bytes}, "bitpacked": {codec: bytes}, "entropy": bytes,
    "entropy_seconds": {"encode", "decode"}, "order0": {"data", "tables", "total"}}`` (bytes are decimal), plus
    ``"pergroup_lrzip"`` (:func:`golflib.quant.pergroup.pergroup_bytes`: #1855's recipe) when ``pergroup``."""
    if not items:
        return {"symbols": 0}
    raw = b"".join(q.astype(np.int8).tobytes() for _, _, q, _ in items)
    out: dict = {"symbols": sum(q.size for _, _, q, _ in items)}
    out["one_per_byte"] = {c: len(compress(raw, c)) for c in byte_codecs}
    if bitpacked:
        packed = b"".join(pack(q, bits) for _, _, q, bits in items)
        out["bitpacked"] = {"raw": len(packed), **{c: len(compress(packed, c)) for c in byte_codecs}}
    lengths, seconds = coder_round_trip(items)
    out["entropy"] = sum(lengths)
    out["entropy_seconds"] = seconds
    if pergroup:
        from golflib.quant.pergroup import pergroup_bytes  # the lrzip binary; a workbook measurement

        out["pergroup_lrzip"] = pergroup_bytes([(name, q) for name, _, q, _ in items])
    bounds = [entropy.order0_bound_bytes(q) for _, _, q, _ in items]
    out["order0"] = {k: round(sum(b[k] for b in bounds), 1) for k in ("data", "tables", "total")}
    return out


def codec_report(qs: QuantizedState, **kw) -> dict:
    """:func:`codec_bytes` for every tensor class with codes, and for ``"all"`` of them together."""
    items = code_tensors(qs)
    out = {cls: codec_bytes([it for it in items if it[1] == cls], **kw) for cls in sorted({it[1] for it in items})}
    out["all"] = codec_bytes(items, **kw)
    return out


def layer_of(name: str) -> int | None:
    """Layer index in a parameter name (``blocks.3.…`` → 3), None for non-block tensors."""
    m = re.search(r"\.(\d+)\.", f".{name}")
    return int(m.group(1)) if m else None


def tensor_errors(state_dict: dict[str, torch.Tensor], qs: QuantizedState) -> list[dict]:
    """Per tensor: ``{"name", "class", "layer", "bits", "kind", "rel_mse"}`` with
    ``rel_mse = ‖W − Ŵ‖² / ‖W‖²`` (0 for exact passthrough)."""
    deq = dequantize(qs)
    rows = []
    for name, e in qs.meta["tensors"].items():
        w = state_dict[name].detach().float().cpu()
        d = float(((w - deq[name].float()) ** 2).sum())
        n = float((w ** 2).sum())
        rows.append({"name": name, "class": entry_class(name, e), "layer": layer_of(name), "bits": e.get("bits"),
                     "kind": e.get("kind"), "rel_mse": d / n if n > 0 else 0.0})
    return rows


ORACLE_BETAS = (0.75, 1.0, 1.25, 1.5, 1.75, 2.0)  # generalized-Gaussian shapes the oracle may pick per tensor


def column_scale_oracle_bytes(q: np.ndarray) -> float:
    """A reference floor for coders that condition on scales: the information (bytes) of the codes ``q``
    ``[rows, cols]`` under a discretized generalized Gaussian whose scale is each column's own RMS and whose shape β
    (one per tensor, from :data:`ORACLE_BETAS`) is the best for this tensor — every scale and β given for free. A
    coder whose contexts are row and column scales, and which pays for them, lands above it on codes that are
    independent given those scales (golflib's: 0.04–0.8% above in docs/LOG.md's issue-19 tables); one that lands
    clearly below it uses dependencies between codes. Not a strict bound: a richer shape family can go below it too.
    Computed from the ``[cols, values]`` histogram, so it is cheap at any size."""
    from scipy.special import gamma
    from scipy.stats import gennorm

    q = np.asarray(q, dtype=np.int64)
    lo = int(q.min())
    vals = np.arange(lo, int(q.max()) + 1)
    counts = np.zeros((q.shape[1], vals.size))
    np.add.at(counts, (np.broadcast_to(np.arange(q.shape[1]), q.shape), q - lo), 1)
    rms = np.sqrt((counts * vals[None, :] ** 2).sum(1) / q.shape[0])[:, None]
    best = np.inf
    for beta in ORACLE_BETAS:
        s = np.maximum(rms, 1e-3) / np.sqrt(gamma(3 / beta) / gamma(1 / beta))
        a, b = (np.abs(vals) + 0.5)[None, :] / s, np.maximum(np.abs(vals) - 0.5, 0)[None, :] / s
        p = np.where(vals[None, :] == 0, 2 * gennorm.cdf(a, beta) - 1, gennorm.cdf(a, beta) - gennorm.cdf(b, beta))
        best = min(best, float(-(counts * np.log2(np.maximum(p, 1e-300))).sum()))
    return best / 8


def symbol_table(items: list[tuple[str, str, np.ndarray, int]], *, pergroup: bool = True) -> dict:
    """Bytes of the same code symbols under every anchor codec, per tensor class and in total (issue 19).

    ``items`` as :func:`code_tensors`. golflib's coder codes all tensors in order with one adaptive state, as the
    artifact does; a class's coder bytes are the sum of its tensors' sections. Byte codecs run on one code per byte
    of each class (and of everything, for the total); the per-group lrzip recipe (:func:`golflib.quant.pergroup.
    pergroup_bytes`) runs per class, its total is their sum (its groups never span classes).

    Returns ``{"classes": {cls: row}, "total": row, "seconds": {...}}`` with a row ``{"symbols", "zstd",
    "brotli", "brotli+bshf2", "pergroup_lrzip" (when ``pergroup``), "order0", "column_scale_oracle", "entropy",
    "entropy_over_zstd", "entropy_over_pergroup_lrzip"}`` (decimal bytes; the order-0 bound includes its tables,
    the oracle is :func:`column_scale_oracle_bytes`) and seconds of the
    coder's encode and decode and of lrzip's. Raises ``AssertionError`` if a round trip fails (never expected)."""
    lengths, coder_s = coder_round_trip(items)
    seconds = {"entropy_encode": coder_s["encode"], "entropy_decode": coder_s["decode"]}
    # per tensor: (class, codes, coder bytes, order-0 bound, oracle), each computed once
    per = [(cls, q, n, entropy.order0_bound_bytes(q)["total"], column_scale_oracle_bytes(q))
           for (_, cls, q, _), n in zip(items, lengths)]

    def row(sel: list) -> dict:
        raw = b"".join(q.astype(np.int8).tobytes() for _, q, *_ in sel)
        r = {"symbols": int(sum(q.size for _, q, *_ in sel))}
        r.update({c: len(compress(raw, c)) for c in TABLE_CODECS})
        r["order0"] = round(sum(t[3] for t in sel), 1)
        r["column_scale_oracle"] = round(sum(t[4] for t in sel), 1)
        r["entropy"] = sum(t[2] for t in sel)
        return r

    classes = {}
    for cls in sorted({c for _, c, *_ in items}):
        classes[cls] = row([t for t in per if t[0] == cls])
        if pergroup:
            from golflib.quant.pergroup import pergroup_bytes  # the lrzip binary; a workbook measurement

            pg = pergroup_bytes([(name, q) for name, c, q, _ in items if c == cls])
            classes[cls]["pergroup_lrzip"] = pg["total"]
            for k in ("encode", "decode"):
                seconds[f"lrzip_{k}"] = round(seconds.get(f"lrzip_{k}", 0.0) + pg["seconds"][k], 3)
    total = row(per)
    if pergroup:
        total["pergroup_lrzip"] = sum(r["pergroup_lrzip"] for r in classes.values())
    for r in [*classes.values(), total]:
        r["entropy_over_zstd"] = round(r["entropy"] / r["zstd"], 4)
        if pergroup:
            r["entropy_over_pergroup_lrzip"] = round(r["entropy"] / r["pergroup_lrzip"], 4)
    return {"classes": classes, "total": total, "seconds": seconds}
