"""Helpers behind ``notebooks/10_train.ipynb`` and ``golf demo``: run-parameter handling and run summaries."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from golflib.config import Config
from golflib.data.bytecount import load_byte_counter
from golflib.data.loader import load_validation_tokens
from golflib.data.shards import list_shards, load_shard
from golflib.eval.bpb import unigram_bpb
from golflib.presets import resolve
from golflib.runlog import create_run_dir
from golflib.settings.training import DataConfig
from golflib.runresult import RunResult
from golflib.workbook.runs import load_config, load_json, load_result, update_result

# Smoke runs (tests/CI): the same code path in ~20 s of training on a smaller shape and a val slice.
SMOKE_OVERRIDES: dict[str, Any] = {
    "NUM_LAYERS": 2, "MODEL_DIM": 64, "NUM_HEADS": 2, "NUM_KV_HEADS": 1, "TRAIN_SEQ_LEN": 128,
    "TRAIN_BATCH_TOKENS": 2048, "VAL_LOSS_EVERY": 20, "TRAIN_LOG_EVERY": 5, "VAL_BATCH_SIZE": 16384,
    "VAL_MAX_TOKENS": 16384, "EVAL_SEQ_LEN": 128, "EVAL_STRIDE": 64, "WARMDOWN_ITERS": 20,
    "GPTQ_CALIBRATION_BATCHES": 2, "GPTQ_RESERVE_SECONDS": 1.0,
}


def ensure_run_dir(run_dir: str | os.PathLike | None, slug: str, runs_root: str | os.PathLike = "runs") -> Path:
    """``run_dir`` as a Path (created if needed), or a fresh ``runs/<id>_<slug>`` when None (interactive use)."""
    if run_dir:
        path = Path(run_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return create_run_dir(runs_root, slug=slug)


def data_overrides(preset: str, data_root: str | os.PathLike) -> dict[str, str]:
    """The preset's ``DATA_PATH``/``TOKENIZER_PATH`` re-rooted under ``data_root`` when they point into ``./data``
    (so a notebook's ``data_root`` parameter moves the whole dataset); empty when nothing changes."""
    flat = resolve(preset, environ={}).flat()
    out: dict[str, str] = {}
    for key in ("DATA_PATH", "TOKENIZER_PATH"):
        parts = Path(flat[key]).parts
        if parts and parts[0] == "data" and Path(data_root) != Path("data"):
            out[key] = str(Path(data_root, *parts[1:]))
    return out


def train_overrides(overrides: Mapping[str, Any] | None, *, preset: str = "cpu-tiny",
                    data_root: str | os.PathLike = "data", max_wallclock_seconds: float | None = None,
                    seed: int | None = None, smoke: bool = False) -> dict[str, Any]:
    """The override dict passed to the training, in order: the smoke shape (if ``smoke``), the data paths under
    ``data_root``, the notebook's ``overrides``, then the explicit ``max_wallclock_seconds``/``seed``."""
    out: dict[str, Any] = dict(SMOKE_OVERRIDES) if smoke else {}
    out.update(data_overrides(preset, data_root))
    out.update(overrides or {})
    if max_wallclock_seconds is not None:
        out["MAX_WALLCLOCK_SECONDS"] = float(max_wallclock_seconds)
    if seed is not None:
        out["SEED"] = int(seed)
    return out


def check_preset(preset: str, overrides: Mapping[str, Any], scale: float = 1.0) -> dict:
    """Resolve the config in this process first, so a typo fails in the notebook, not in a subprocess."""
    return resolve(preset, overrides, scale=scale).flat()


def resolve_run(preset: str, overrides: Mapping[str, Any], scale: float = 1.0) -> Config:
    """The one resolution of a notebook's training config (preset → ``scale`` → environment → ``overrides``);
    :func:`golflib.workbook.launch.launch_training` writes exactly this to the run's ``config.json`` and trains on
    it. ``COUNTED_CODE_BYTES`` is set to the bytes of this config's bundled ``train_gpt.py`` (what a submission
    counts), as ``golf train`` does, unless ``overrides`` set it. Raises :class:`golflib.settings.base.ConfigError`
    naming a bad field here, not in the subprocess."""
    return with_counted_code(resolve(preset, overrides, scale=scale), overrides)


def with_counted_code(cfg: Config, overrides: Mapping[str, Any]) -> Config:
    """``cfg`` with ``COUNTED_CODE_BYTES`` = its bundle's counted bytes
    (:func:`golflib.workbook.quant_cli.bundle_code_bytes`) unless ``overrides`` name that field: the run's budget,
    pre-flight and result then count the code a submission carries, not the package's sources."""
    from golflib.workbook.quant_cli import bundle_code_bytes

    if "COUNTED_CODE_BYTES" in {str(k).upper() for k in overrides}:
        return cfg
    return cfg.replace({"COUNTED_CODE_BYTES": bundle_code_bytes(cfg)[0]}, source="the bundle of this config")


def add_reference_scores(run_dir: str | os.PathLike) -> dict:
    """Compute the unigram val_bpb of the run's val set (unigram fitted on the first train shard, add-one smoothed)
    and store it in ``result.json`` under ``reference``; returns the updated result."""
    cfg = load_config(run_dir)["config"]
    data, model, train = cfg["data"], cfg["model"], cfg["train"]
    val_glob = data["val_files"] or os.path.join(data["data_path"], "*_val_*.bin")
    train_glob = data["train_files"] or os.path.join(data["data_path"], "*_train_*.bin")
    val = load_validation_tokens(val_glob, train["train_seq_len"], model["vocab_size"], train["val_max_tokens"])
    luts = load_byte_counter(DataConfig(**data), model["vocab_size"], model["bos_id"])
    first_train = load_shard(list_shards(train_glob)[0])
    ref = {"unigram_val_bpb": unigram_bpb(first_train, val, luts, model["vocab_size"]),
           "unigram_fit": "add-one smoothed counts of the first train shard"}
    return update_result(run_dir, reference=ref)


def summarize(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Headline numbers of a finished run (what ``golf demo`` prints), read through
    :class:`golflib.runresult.RunResult`."""
    r = load_result(run_dir)

    def bpb(key):
        return r.scores[key].val_bpb if key in r.scores else None

    mixed = r.scored_artifact == "mixed"
    out = {
        "run_dir": str(run_dir),
        "steps": r.training["steps"],
        "tokens_trained": r.training["tokens_trained"],
        "tokens_per_second": round(r.training["tokens_per_second"], 1),
        "val_bpb_pre_quant": bpb("pre_quant"),
        "val_bpb_post_quant": bpb("quantized/standard"),
        "scored_artifact": r.scored_artifact,
        "val_bpb_sliding": bpb("mixed/sliding" if mixed else "quantized/sliding"),
        **ttt_summary(r),
        **ngram_summary(r),
        "unigram_val_bpb": r.extras.get("reference", {}).get("unigram_val_bpb"),
        "artifact_bytes": r.artifacts["int8"].artifact_bytes if "int8" in r.artifacts else None,
        "code_bytes": r.code_bytes,
        "bytes_total": r.bytes_total("int8") if "int8" in r.artifacts else None,
    }
    if "mixed" in r.artifacts:  # MIXED_EXPORT: the int6 + entropy-coded artifact, side by side
        m = r.artifacts["mixed"]
        out.update({"mixed_scheme": f"{m.details.get('tag', m.scheme)}+{m.codec}",
                    "mixed_artifact_bytes": m.artifact_bytes, "mixed_bytes_total": m.bytes_total,
                    "val_bpb_post_quant_mixed": bpb("mixed/standard")})
    record = Path(run_dir) / "record.json"  # written by notebooks/50_record.ipynb (golf demo runs it on the run)
    if record.is_file():
        rec = load_json(record)
        out.update({"record_folder": rec.get("path"), "record_compliance_ok": (rec.get("compliance") or {}).get("ok")})
    return out


def ttt_summary(r: RunResult) -> dict[str, Any]:
    """``val_bpb_ttt_<kind>`` and ``ttt_<kind>_legal`` for every TTT kind a run scored (empty when TTT was off)."""
    out: dict[str, Any] = {}
    for key, e in r.scores.items():
        if key.startswith("ttt/"):
            kind = key[4:]
            out[f"val_bpb_ttt_{kind}"] = e.val_bpb
            out[f"ttt_{kind}_legal"] = bool((e.ledger or {}).get("legal"))
    return out


def ngram_summary(r: RunResult) -> dict[str, Any]:
    """``val_bpb_ngram_<protocol>``, its Δ against the same protocol without the mixer and ``ngram_<protocol>_legal``
    for every protocol scored with the n-gram mixer (empty when NGRAM_ENABLED was off)."""
    out: dict[str, Any] = {}
    for key, e in r.scores.items():
        if key.startswith("ngram/"):
            protocol = key[6:]
            out[f"val_bpb_ngram_{protocol}"] = e.val_bpb
            if key in r.references:
                out[f"ngram_{protocol}_delta_bpb"] = r.references[key]["delta_bpb"]
            out[f"ngram_{protocol}_legal"] = bool((e.ledger or {}).get("legal"))
    return out


def score_labels(summary: Mapping[str, Any]) -> dict[str, str]:
    """``{summary key: figure label}`` of every score a :func:`summarize` dict may hold, reference first."""
    mixed = summary.get("mixed_scheme", "mixed")
    art = mixed if summary.get("scored_artifact") == "mixed" else "int8"
    return {"unigram_val_bpb": "unigram (reference)", "val_bpb_pre_quant": "pre-quant",
            "val_bpb_post_quant": "int8 round trip", "val_bpb_post_quant_mixed": f"{mixed} round trip",
            "val_bpb_sliding": f"{art} sliding window", "val_bpb_ttt_chunked": f"{art} + legal chunked TTT",
            "val_bpb_ttt_lora": f"{art} + doc-LoRA TTT", "val_bpb_ttt_phased": f"{art} + phased TTT",
            "val_bpb_ngram_sliding": f"{art} sliding + n-gram mix",
            "val_bpb_ngram_chunked": f"{art} + chunked TTT + n-gram mix",
            "val_bpb_ngram_lora": f"{art} + doc-LoRA TTT + n-gram mix",
            "val_bpb_ngram_phased": f"{art} + phased TTT + n-gram mix"}


def score_table(summary: Mapping[str, Any]) -> dict[str, float]:
    """``{label: val_bpb}`` of the scores present in a :func:`summarize` dict, reference first."""
    return {label: summary[key] for key, label in score_labels(summary).items() if summary.get(key) is not None}


def scored_label(summary: Mapping[str, Any]) -> str | None:
    """The :func:`score_table` label of the score a record of this run would submit: its best TTT score when TTT
    ran (the records report the legal TTT score as final), else its sliding-window score, else the round trip."""
    keys = [k for k in ("val_bpb_ttt_chunked", "val_bpb_ttt_lora", "val_bpb_ttt_phased") if summary.get(k) is not None]
    if not keys:
        keys = [k for k in ("val_bpb_sliding", "val_bpb_post_quant_mixed", "val_bpb_post_quant")
                if summary.get(k) is not None][:1]
    if not keys:
        return None
    return score_labels(summary)[min(keys, key=lambda k: summary[k])]


def format_summary(summary: Mapping[str, Any]) -> str:
    """One ``key: value`` line per entry, integers with thousands separators (booleans printed as such)."""
    lines = []
    for k, v in summary.items():
        lines.append(f"{k:>24}: {v:,}" if isinstance(v, int) and not isinstance(v, bool) else f"{k:>24}: {v}")
    return "\n".join(lines)


def summary_frame(summary: Mapping[str, Any]):
    """``summary`` as a one-column pandas DataFrame (index: the keys, column ``value``) for a notebook to display;
    integers keep thousands separators and floats 5 decimals (val_bpb's reported precision), as strings so one
    column can hold numbers, flags and names."""
    import pandas as pd

    def fmt(v: Any) -> str:
        if isinstance(v, bool) or v is None:
            return str(v)
        if isinstance(v, int):
            return f"{v:,}"
        if isinstance(v, float):
            return f"{v:.5f}"
        return str(v)

    return pd.DataFrame({"value": [fmt(v) for v in summary.values()]}, index=pd.Index(list(summary), name="metric"))
