"""``golf eval``: re-score an artifact from disk (standard and sliding window) on the val set of its run."""

from __future__ import annotations

import math
import os
from pathlib import Path

from tabulate import tabulate

from golflib.config import Config
from golflib.data.bytecount import load_byte_counter
from golflib.data.loader import load_validation_tokens
from golflib.eval.protocols import PROTOCOLS
from golflib.quant.artifact import ArtifactError
from golflib.quant.export import load_artifact_model
from golflib.workbook.runs import find_artifact


def resolve_target(target: str | os.PathLike) -> tuple[Path, Config]:
    """``(artifact path, config)`` for a run directory or an artifact file. The config comes from the run's
    ``config.json`` (next to the artifact) or, for a lone artifact, from defaults + environment."""
    target = Path(target)
    if target.is_dir():
        artifact, cfg_path = find_artifact(target), target / "config.json"
    elif target.is_file():
        artifact, cfg_path = target, target.parent / "config.json"
    else:
        raise FileNotFoundError(f"{target}: neither a run directory nor an artifact file")
    cfg = Config.from_json_file(cfg_path) if cfg_path.is_file() else Config().with_env()
    return artifact, cfg


def score_artifact(target: str | os.PathLike, *, stride: int | None = None,
                   val_max_tokens: int | None = None) -> dict:
    """Load the artifact into a fresh model (architecture from the artifact) and score it on CPU/the default
    device with the run's own protocols (:mod:`golflib.eval.protocols`: the doc-isolated standard eval when the
    run used it, the run's window set for sliding); returns ``{"artifact", "artifact_bytes", "standard": {...},
    "sliding": {...} | None}``."""
    artifact, cfg = resolve_target(target)
    model = load_artifact_model(artifact)
    mc, tc = model.cfg, cfg.train
    max_tokens = tc.val_max_tokens if val_max_tokens is None else val_max_tokens
    luts = load_byte_counter(cfg.data, mc.vocab_size, mc.bos_id)
    std_len = PROTOCOLS["standard"].seq_len(cfg)
    val = load_validation_tokens(cfg.data.val_glob, std_len, mc.vocab_size, max_tokens)
    out = {"artifact": str(artifact), "artifact_bytes": artifact.stat().st_size, "val_max_tokens": max_tokens}
    out["standard"] = PROTOCOLS["standard"].run(model, val, luts, cfg).to_dict()
    stride = cfg.eval.eval_stride if stride is None else stride
    out["sliding"] = None
    if stride > 0:
        scfg = cfg.replace({"EVAL_STRIDE": stride}, source="golf eval --stride")
        eval_len = PROTOCOLS["sliding"].seq_len(scfg)
        sval = val if eval_len == std_len else load_validation_tokens(cfg.data.val_glob, eval_len, mc.vocab_size,
                                                                      max_tokens)
        out["sliding"] = PROTOCOLS["sliding"].run(model, sval, luts, scfg).to_dict()
    for name in ("standard", "sliding"):
        if out[name] is not None and not math.isfinite(out[name]["val_bpb"]):
            raise ArtifactError(f"{artifact}: {name} val_bpb is {out[name]['val_bpb']} — the weights give non-finite "
                                "log-probabilities; this artifact cannot be scored")
    return out


def eval_summary(out: dict) -> str:
    """One line per protocol of ``golf eval``'s result (:func:`score_artifact`): val_bpb, val_loss (nats), tokens,
    bytes, seconds."""
    rows = [[name, f"{r['val_bpb']:.6f}", f"{r['val_loss']:.6f}", f"{r['tokens']:,}", f"{r['bytes']:,}",
             f"{r['seconds']:.1f}"] for name, r in out.items() if isinstance(r, dict) and "val_bpb" in r]
    return (f"{out['artifact']} ({out['artifact_bytes']:,} bytes)\n"
            + tabulate(rows, headers=["protocol", "val_bpb", "val_loss (nats)", "tokens", "bytes", "seconds"],
                       colalign=("left", "right", "right", "right", "right", "right"), disable_numparse=True))
