"""Re-quantizing a trained checkpoint and scoring it: behind ``golf quant``, ``golf bench quant`` and
``notebooks/30_quant_analysis.ipynb``.

A run directory holds ``final_model.safetensors`` (fp32 weights) and ``config.json``; :func:`load_checkpoint`
rebuilds the model and the val stream from them. Scores are standard (non-overlapping) val_bpb of the weights an
artifact decodes to — :func:`requantize` writes the artifact and reloads it from disk before scoring.
Calibrating on training data *after* a run is fine for analysis, but a record must calibrate inside its training
budget (SPEC trap 8); results here carry ``"calibration": {"source", ...}`` so the difference stays visible.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from golflib.config import Config
from golflib.settings.quant import QuantConfig
from golflib.data.bytecount import load_byte_counter
from golflib.data.loader import DistributedTokenLoader, load_validation_tokens
from golflib.eval.bpb import EvalResult, eval_standard
from golflib.model.gpt import GPT
from golflib.quant.artifact import encode_artifact
from golflib.quant.budget import artifact_budget
from golflib.workbook.resultfile import load_run_result
from golflib.quant.calib import ar_batches, collect_hessians, train_batches
from golflib.quant.export import export_int8, export_mixed, load_artifact_model
from golflib.quant.int8 import QuantizedState, dequantize, quantize_int8
from golflib.quant.mixed import quantize_mixed, scheme_tag

CHECKPOINT = "final_model.safetensors"


@dataclass
class Checkpoint:
    """A trained run loaded for analysis: ``cfg``, fp32 ``model``, its ``state_dict`` (CPU), the val stream and
    byte LUTs (None when loaded without val; ``val_max_tokens`` > 0 marks a truncated, smoke-only val slice)."""

    run_dir: Path
    cfg: Config
    model: GPT
    state_dict: dict
    val_tokens: torch.Tensor | None
    luts: Any
    val_max_tokens: int
    code_bytes: int | None


def load_checkpoint(run_dir: str | os.PathLike, val_max_tokens: int | None = None, *,
                    with_val: bool = True) -> Checkpoint:
    """Load ``run_dir``'s weights and config (and, with ``with_val``, the val stream and byte LUTs). Raises
    ``FileNotFoundError`` naming a missing file."""
    run_dir = Path(run_dir)
    for f in (CHECKPOINT, "config.json"):
        if not (run_dir / f).is_file():
            raise FileNotFoundError(f"{run_dir / f}: missing (a finished training run writes it)")
    from safetensors.torch import load_file

    cfg = Config.from_json_file(run_dir / "config.json")
    model = GPT(cfg.model)
    model.load_state_dict(load_file(str(run_dir / CHECKPOINT)), strict=True)
    model.eval()
    vmax = cfg.train.val_max_tokens if val_max_tokens is None else val_max_tokens
    val = luts = None
    if with_val:
        val = load_validation_tokens(cfg.data.val_glob, cfg.train.train_seq_len, cfg.model.vocab_size, vmax)
        luts = load_byte_counter(cfg.data, cfg.model.vocab_size, cfg.model.bos_id)
    code = None
    if (run_dir / "result.json").is_file():
        code = load_run_result(run_dir).code_bytes
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return Checkpoint(run_dir, cfg, model, sd, val, luts, vmax, code)


def evaluate(ck: Checkpoint, weights: Mapping[str, torch.Tensor] | QuantizedState | None = None) -> EvalResult:
    """Standard val_bpb of the checkpoint (``weights=None``), of a float state dict, or of a QuantizedState
    (dequantized first). The checkpoint's own weights are restored afterwards."""
    if weights is None:
        model = ck.model
    else:
        sd = dequantize(weights) if isinstance(weights, QuantizedState) else weights
        model = GPT(ck.cfg.model)
        model.load_state_dict({k: v.to(ck.state_dict[k].dtype) for k, v in sd.items()}, strict=True)
        model.eval()
    tc = ck.cfg.train
    return eval_standard(model, ck.val_tokens, ck.luts, seq_len=tc.train_seq_len, batch_tokens=tc.val_batch_size)


def calibrate(ck: Checkpoint, source: str = "train", batches: int | None = None, ar_seqs: int | None = None) -> \
        tuple[dict, dict]:
    """Hessians of the checkpoint from ``batches`` training micro-batches (``source="train"``) or ``ar_seqs``
    AR self-generated sequences (``"ar"``); returns ``(hessians, stats)`` (stats include ``source``)."""
    q, tc = ck.cfg.quant, ck.cfg.train
    if source == "train":
        loader = DistributedTokenLoader(ck.cfg.data.train_glob, 0, 1, "cpu", ck.cfg.model.vocab_size)
        accum = tc.global_microbatches
        it = train_batches(loader, batches or q.gptq_calibration_batches, tc.train_batch_tokens, tc.train_seq_len,
                           accum)
    elif source == "ar":
        it = ar_batches(ck.model, ar_seqs or q.gptq_ar_seqs, tc.train_seq_len, temperature=q.gptq_ar_temperature,
                        seed=tc.seed)
    else:
        raise ValueError(f"calibration source {source!r}: expected 'train' or 'ar'")
    hs, stats = collect_hessians(ck.model, it)
    stats["source"] = source
    stats["note"] = "post-hoc calibration (analysis only; a record calibrates inside its training budget)" \
        if source == "train" else "AR self-generated: touches neither train nor val data"
    return hs, stats


def quant_config(ck: Checkpoint, overrides: Mapping[str, Any] | None = None) -> QuantConfig:
    """The run's QuantConfig with ``overrides`` (env-var or field names, validated like any config)."""
    return ck.cfg.replace(dict(overrides or {}), source="quant override").quant


def _fresh_path(run_dir: Path, stem: str) -> Path:
    path = run_dir / f"{stem}.golf"
    i = 2
    while path.exists():  # never overwrite an artifact
        path = run_dir / f"{stem}-{i}.golf"
        i += 1
    return path


def requantize(run_dir: str | os.PathLike, overrides: Mapping[str, Any] | None = None, *, scheme: str = "mixed",
               calibration: str | None = None, val_max_tokens: int | None = None,
               out_dir: str | os.PathLike | None = None) -> dict:
    """Re-quantize a trained checkpoint with another scheme, write the artifact (a new file, never overwriting)
    and score it reloaded from disk.

    Args:
        run_dir: a run directory with ``final_model.safetensors`` and ``config.json``.
        overrides: QuantConfig fields (``{"MATRIX_BITS": 5, "MIXED_CODEC": "brotli"}``).
        scheme: ``mixed`` (per-class int-k, SDClip, GPTQ…) or ``int8`` (the baseline export, ARTIFACT_CODEC).
        calibration: ``train`` | ``ar`` | ``none`` (default: the config's GPTQ_CALIBRATION when GPTQ_ENABLED).
        val_max_tokens: truncate val (smoke only; the result says so).
        out_dir: where the artifact goes (default ``run_dir``).

    Returns:
        ``{"artifact", "scheme", "codec", "artifact_bytes", "code_bytes", "bytes_total", "under_limit",
        "classes", "val_bpb", "val_loss", "val_bpb_pre_quant", "calibration", "val_max_tokens"}``.
    """
    ck = load_checkpoint(run_dir, val_max_tokens)
    qcfg = quant_config(ck, overrides)
    out_dir = Path(out_dir or ck.run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hessians, cal = None, {"source": "none"}
    if scheme == "mixed":
        source = calibration or (qcfg.gptq_calibration if qcfg.gptq_enabled else "none")
        if source != "none":
            hessians, cal = calibrate(ck, source)
        path = _fresh_path(out_dir, f"requant.{scheme_tag(qcfg)}_{qcfg.mixed_codec}")
        info, extras = export_mixed(ck.state_dict, path, qcfg, ck.cfg.model, hessians,
                                    code_bytes=ck.code_bytes or 0)
    elif scheme == "int8":
        path = _fresh_path(out_dir, f"requant.int8_{qcfg.artifact_codec}")
        info, extras = export_int8(ck.state_dict, path, qcfg, ck.cfg.model), {}
    else:
        raise ValueError(f"scheme {scheme!r}: expected 'mixed' or 'int8'")
    model = load_artifact_model(path)
    tc = ck.cfg.train
    res = eval_standard(model, ck.val_tokens, ck.luts, seq_len=tc.train_seq_len, batch_tokens=tc.val_batch_size)
    pre = evaluate(ck)
    budget = artifact_budget(path.read_bytes(), str(path))
    code = ck.code_bytes or 0
    return {"artifact": str(path), "scheme": info.scheme, "codec": info.codec, "artifact_bytes": info.artifact_bytes,
            "code_bytes": ck.code_bytes, "bytes_total": info.artifact_bytes + code,
            "under_limit": info.artifact_bytes + code < 16_000_000,
            "classes": {c: v["bytes"] for c, v in budget["classes"].items()}, "val_bpb": res.val_bpb,
            "val_loss": res.val_loss, "val_bpb_pre_quant": pre.val_bpb, "calibration": _jsonable(cal),
            "val_max_tokens": ck.val_max_tokens, **extras}


def _jsonable(d: dict) -> dict:
    return {k: v for k, v in d.items() if isinstance(v, (int, float, str, bool, type(None)))}


def quantize_and_score(ck: Checkpoint, overrides: Mapping[str, Any] | None = None, hessians: dict | None = None,
                       codec: str | None = None) -> dict:
    """In-memory variant for sweeps: quantize with ``overrides``, encode with ``codec`` (default MIXED_CODEC),
    score the decoded weights. Returns ``{"artifact_bytes", "val_bpb", "qs"}``."""
    qcfg = quant_config(ck, overrides)
    qs = quantize_mixed(ck.state_dict, qcfg, hessians if qcfg.gptq_enabled else None)
    qs.meta["model"] = dataclasses.asdict(ck.cfg.model)
    n = len(encode_artifact(qs, codec or qcfg.mixed_codec))
    return {"artifact_bytes": n, "val_bpb": evaluate(ck, qs).val_bpb, "qs": qs}


def int8_state(ck: Checkpoint) -> QuantizedState:
    """The baseline int8 quantization of the checkpoint (for comparisons)."""
    return quantize_int8(ck.state_dict, ck.cfg.quant)


BITS_FIELD = {"attention": "ATTN_BITS", "mlp": "MLP_BITS", "embedding": "EMBED_BITS", "head": "EMBED_BITS",
              "matrix": "MATRIX_BITS"}


def sweep_bits(ck: Checkpoint, hessians: dict | None, classes: list[str], bits_list: list[int]) -> list[dict]:
    """Post-quant val_bpb when one class's bit width changes (others at the run's settings):
    rows ``{"class", "bits", "val_bpb", "artifact_bytes"}``. Raises ``ValueError`` for an unknown class."""
    rows = []
    for cls in classes:
        if cls not in BITS_FIELD:
            raise ValueError(f"class {cls!r}: expected one of {sorted(BITS_FIELD)}")
        for b in bits_list:
            r = quantize_and_score(ck, {BITS_FIELD[cls]: b}, hessians)
            rows.append({"class": cls, "bits": b, "val_bpb": r["val_bpb"], "artifact_bytes": r["artifact_bytes"]})
    return rows


def sweep_sdclip(ck: Checkpoint, hessians: dict | None, k_list: list[float]) -> list[dict]:
    """Bytes–val_bpb trade-off of the block matrices' SDClip k (``MATRIX_CLIP_SIGMAS``, attention and MLP
    following it): rows ``{"k", "artifact_bytes", "val_bpb", "pareto"}`` (``pareto``: no other k is both smaller
    and better)."""
    rows = []
    for k in k_list:
        r = quantize_and_score(ck, {"MATRIX_CLIP_SIGMAS": k, "ATTN_CLIP_SIGMAS": 0, "MLP_CLIP_SIGMAS": 0}, hessians)
        rows.append({"k": k, "artifact_bytes": r["artifact_bytes"], "val_bpb": r["val_bpb"]})
    for r in rows:
        r["pareto"] = not any(o is not r and o["artifact_bytes"] <= r["artifact_bytes"] and o["val_bpb"] <= r["val_bpb"]
                              and (o["artifact_bytes"], o["val_bpb"]) != (r["artifact_bytes"], r["val_bpb"])
                              for o in rows)
    return rows


def gptq_vs_rtn(ck: Checkpoint, hessians: dict, bits_list: list[int]) -> list[dict]:
    """Post-quant val_bpb of GPTQ and of round-to-nearest at equal matrix bits (same SDClip scales):
    rows ``{"bits", "method", "val_bpb", "artifact_bytes"}``."""
    rows = []
    for b in bits_list:
        for method, on in (("rtn", False), ("gptq", True)):
            r = quantize_and_score(ck, {"MATRIX_BITS": b, "ATTN_BITS": 0, "MLP_BITS": 0, "GPTQ_ENABLED": on},
                                   hessians)
            rows.append({"bits": b, "method": method, "val_bpb": r["val_bpb"], "artifact_bytes": r["artifact_bytes"]})
    return rows
