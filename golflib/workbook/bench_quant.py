"""``golf bench quant --run RUN_DIR``: bytes of the int-k block matrices of a trained model under every codec.

On the checkpoint of a run (by default the newest ``runs/*_demo``): quantize with per-row int``bits`` and SDClip
``k`` (round-to-nearest, and GPTQ with Hessians from ``calib_batches`` training batches), take the codes of the
block matrices (attention, MLP, other matrices), and report bytes for zlib/zstd-22/lzma/brotli on one code per byte
and bit-packed, the context range coder, and the order-0 bound incl. tables (:mod:`golflib.quant.report`). Goals
(issue 4): entropy coder ≤ 1.005 × order-0 bound and ≤ 0.98 × zstd-22 of one code per byte. Also: the whole
artifact per codec and per class, and the run's own int8 and mixed artifacts with their val_bpb.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from golflib.quant.artifact import encode_artifact
from golflib.quant.mixed import quantize_mixed
from golflib.quant.report import code_tensors, codec_bytes, codec_report
from golflib.workbook.bench import register
from golflib.workbook.quant_lab import calibrate, load_checkpoint, quant_config
from golflib.workbook.runs import list_runs, load_result

MATRIX_CLASSES = ("attention", "mlp", "matrix")
GOAL_BOUND, GOAL_ZSTD = 1.005, 0.98
ARTIFACT_CODECS = ("zlib", "zstd", "lzma", "brotli", "brotli+shuffle2", "entropy")


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


@register("quant")
def bench_quant(run_dir: str | None = None, bits: int = 6, k: float = 12.85, calib_batches: int = 8,
                lrzip: bool = False) -> dict[str, Any]:
    """See module docstring (the bench measures bytes only; its val_bpb figures come from the run's result.json).
    ``lrzip`` adds #1855's per-group lrzip recipe on the GPTQ matrices (:mod:`golflib.quant.pergroup`)."""
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

