"""``golf bench quant --run RUN_DIR``: bytes of the int-k block matrices of a trained model under every codec.

On the checkpoint of a run (by default the newest ``runs/*_demo``): quantize with per-row int``bits`` and SDClip
``k`` (round-to-nearest, and GPTQ with Hessians from ``calib_batches`` training batches), take the codes of the
block matrices (attention, MLP, other matrices), and report bytes for zlib/zstd-22/lzma/brotli on one code per byte
and bit-packed, the context range coder, and the order-0 bound incl. tables (:mod:`golflib.quant.report`). Goals
(issue 4): entropy coder ≤ 1.005 × order-0 bound and ≤ 0.98 × zstd-22 of one code per byte. Also: the whole
artifact per codec and per class, and the run's own int8 and mixed artifacts with their val_bpb.

Issue 19's side-by-side table (``same_symbols``): for int6, int7 and int8 round-to-nearest SDClip codes of every
per-row tensor (embedding included), the bytes of zstd-22, brotli-11, byte shuffle + brotli, #1855's per-group
lrzip ZPAQ (with ``lrzip``), the order-0 bound, the column-scale oracle and golflib's coder, per tensor class and
in total, with the seconds of each coder (:func:`golflib.quant.report.symbol_table`); and ``artifact_decode`` — the
seconds to decode the whole entropy-coded artifact on one thread (the bound: 30 s for a full-size model). ``golf bench quant --preset P`` does
the same on the full-size model of a preset: a trained ``--checkpoint``, or else the pre-flight's Gaussian rows
(:func:`golflib.quant.preflight.gaussian_rows`, labelled ``weights: gaussian``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from golflib.quant.artifact import decode_artifact, encode_artifact
from golflib.quant.mixed import quantize_mixed
from golflib.quant.report import code_tensors, codec_bytes, codec_report, symbol_table
from golflib.workbook.bench import register
from golflib.workbook.quant_lab import calibrate, load_checkpoint, quant_config
from golflib.workbook.runs import list_runs, load_result

MATRIX_CLASSES = ("attention", "mlp", "matrix")
GOAL_BOUND, GOAL_ZSTD = 1.005, 0.98
ARTIFACT_CODECS = ("zlib", "zstd", "lzma", "brotli", "brotli+shuffle2", "entropy")
TABLE_BITS = (6, 7, 8)
GOAL_DECODE_S = 30.0  # golf eval of a full-size artifact decodes within this on one CPU core (issue 19)


def default_run(root: str = "runs") -> Path:
    """The newest ``*_demo`` run with a checkpoint; ``FileNotFoundError`` when there is none."""
    runs = [r for r in list_runs(root) if r.name.endswith("_demo") and (r / "final_model.safetensors").is_file()]
    if not runs:
        raise FileNotFoundError(f"no demo run with final_model.safetensors under {root}/; run `golf demo` or pass "
                                f"--run RUN_DIR")
    return runs[-1]


def _matrix_summary(items, lrzip: bool = False) -> dict:
    r = codec_bytes(items, pergroup=lrzip)
    zstd = r["one_per_byte"]["zstd"]
    if lrzip:  # issue 19's anchor: #1855's per-group lrzip recipe on the same symbols
        r["ratio_to_pergroup_lrzip"] = round(r["entropy"] / r["pergroup_lrzip"]["total"], 4)
    r["ratio_to_order0_bound"] = round(r["entropy"] / r["order0"]["total"], 4)
    r["ratio_to_zstd22"] = round(r["entropy"] / zstd, 4)
    r["bits_per_code"] = round(8 * r["entropy"] / r["symbols"], 4)
    r["meets_goals"] = r["ratio_to_order0_bound"] <= GOAL_BOUND and r["ratio_to_zstd22"] <= GOAL_ZSTD
    return r


def same_symbols(state: dict[str, torch.Tensor], cfg, *, bits: tuple[int, ...] = TABLE_BITS,
                 lrzip: bool = True) -> dict[str, Any]:
    """Issue 19's table for ``state`` (float weights) under ``cfg`` (a :class:`golflib.config.Config`): per bit width,
    every per-row tensor (matrices and embedding at that width, SDClip k of the config, round to nearest, no LQER or
    pruning) through :func:`golflib.quant.report.symbol_table`; then the int6 artifact of the config's recipe
    encoded with ``entropy`` and decoded on one thread (``artifact_decode``: seconds, bytes, the goal)."""
    out: dict[str, Any] = {}
    fixed = {"ATTN_BITS": 0, "MLP_BITS": 0, "GPTQ_ENABLED": False, "LQER_ENABLED": False, "PRUNE_TARGET_BYTES": 0,
             "PRUNE_MAGNITUDE_FRAC": 0.0}
    for b in bits:
        quant = cfg.replace({**fixed, "MATRIX_BITS": b, "EMBED_BITS": b}, source="bench quant").quant
        out[f"int{b}"] = symbol_table(code_tensors(quantize_mixed(state, quant)), pergroup=lrzip)
    quant = cfg.replace({**fixed, "MATRIX_BITS": 6}, source="bench quant").quant
    blob = encode_artifact(quantize_mixed(state, quant), "entropy")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.perf_counter()
        decode_artifact(blob, "<bench artifact>")
        dt = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    out["artifact_decode"] = {"artifact_bytes": len(blob), "seconds": round(dt, 3), "threads": 1,
                              "goal_seconds": GOAL_DECODE_S, "meets_goal": dt < GOAL_DECODE_S}
    return out


def _preset_weights(preset: str, checkpoint: str | None):
    from golflib.model.gpt import GPT
    from golflib.presets import resolve
    from golflib.quant.preflight import gaussian_rows, matching_state

    cfg = resolve(preset, {}, environ={})
    own = GPT(cfg.model).state_dict()
    if checkpoint is None:
        return cfg, gaussian_rows(own, cfg), "gaussian"
    from safetensors.torch import load_file

    try:
        return cfg, matching_state(own, load_file(checkpoint)), "checkpoint"
    except ValueError as e:
        raise ValueError(f"{checkpoint} (preset {preset!r}): {e}") from None


@register("quant")
def bench_quant(run_dir: str | None = None, bits: int = 6, k: float = 12.85, calib_batches: int = 8,
                lrzip: bool = False, preset: str | None = None, checkpoint: str | None = None) -> dict[str, Any]:
    """See module docstring (the bench measures bytes only; its val_bpb figures come from the run's result.json).
    ``lrzip`` adds #1855's per-group lrzip recipe (:mod:`golflib.quant.pergroup`) to the GPTQ matrices and to the
    side-by-side table. With ``preset`` only the side-by-side table runs, on that preset's full-size model
    (``checkpoint`` weights, else Gaussian rows). Raises ``ValueError`` for a checkpoint of another model."""
    if preset is not None:
        cfg, state, source = _preset_weights(preset, checkpoint)
        return {"preset": preset, "weights": source, "checkpoint": checkpoint,
                "params": int(sum(t.numel() for t in state.values())),
                "same_symbols": same_symbols(state, cfg, lrzip=lrzip)}
    run = Path(run_dir) if run_dir else default_run()
    ck = load_checkpoint(run, with_val=False)
    over = {"MATRIX_BITS": bits, "MATRIX_CLIP_SIGMAS": k, "ATTN_BITS": 0, "MLP_BITS": 0, "ATTN_CLIP_SIGMAS": 0,
            "MLP_CLIP_SIGMAS": 0, "LQER_ENABLED": False, "PRUNE_TARGET_BYTES": 0}
    out: dict[str, Any] = {"run_dir": str(run), "bits": bits, "sdclip_k": k,
                           "goals": {"entropy_over_order0_bound_max": GOAL_BOUND, "entropy_over_zstd22_max": GOAL_ZSTD}}
    rtn = quantize_mixed(ck.state_dict, quant_config(ck, {**over, "GPTQ_ENABLED": False}))
    out["matrices_rtn"] = _matrix_summary(code_tensors(rtn, MATRIX_CLASSES))
    hs, stats = calibrate(ck, "train", batches=calib_batches)
    gptq = quantize_mixed(ck.state_dict, quant_config(ck, {**over, "GPTQ_ENABLED": True}), hs)
    out["matrices_gptq"] = _matrix_summary(code_tensors(gptq, MATRIX_CLASSES), lrzip=lrzip)
    out["calibration"] = {k2: v for k2, v in stats.items() if not isinstance(v, dict)}
    out["same_symbols"] = same_symbols(ck.state_dict, ck.cfg, lrzip=lrzip)
    out["artifact_bytes_by_codec"] = {c: len(encode_artifact(gptq, c)) for c in ARTIFACT_CODECS}
    out["per_class_gptq"] = {cls: {"entropy": r.get("entropy"), "zstd22": r.get("one_per_byte", {}).get("zstd"),
                                   "order0_bound": r.get("order0", {}).get("total"), "symbols": r["symbols"]}
                             for cls, r in codec_report(gptq, bitpacked=False).items()}
    if (run / "result.json").is_file():
        res = load_result(run)
        i8, mx = res.artifacts.get("int8"), res.artifacts.get("mixed")
        out["run_artifacts"] = {
            "int8": None if i8 is None else {"path": i8.path, "codec": i8.codec, "artifact_bytes": i8.artifact_bytes,
                                             "val_bpb": res.score("quantized/standard").val_bpb},
            "mixed": None if mx is None else {"path": mx.path, "codec": mx.codec, "artifact_bytes": mx.artifact_bytes,
                                              "tag": mx.details.get("tag"),
                                              "val_bpb": res.score("mixed/standard").val_bpb},
            "val_bpb_pre_quant": res.scores["pre_quant"].val_bpb if res.has("pre_quant") else None,
            "steps": res.training["steps"],
        }
    return out

