"""Export a run's metrics to a tracker a team already looks at (issue 18; off by default): TensorBoard event files
through ``torch.utils.tensorboard`` (needs the ``tensorboard`` package: ``pip install -e ".[tracking]"``).

``golf runs tensorboard RUN [--out DIR]`` writes, from the run directory (which stays the truth):

- ``train/loss`` (nats/token) and ``train/lr_mult`` per logged training step, at their wall-clock time;
- ``val/val_bpb`` (bits/byte) and ``val/val_loss`` (nats/token) per validation;
- ``score/<key>/val_bpb`` for every score of ``result.json`` (``quantized/standard``, ``ttt/lora``...), at the
  final step;
- ``bytes/bytes_total`` and the resolved config as text.

Then ``tensorboard --logdir runs/<id>/tensorboard`` (or a folder holding several runs' exports) shows them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def export_tensorboard(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Path:
    """Write the run's metrics as TensorBoard event files into ``out_dir`` (default ``<run_dir>/tensorboard``) and
    return it. Raises ``FileNotFoundError`` for a folder that is not a run, ``ImportError`` naming the missing
    package when tensorboard is not installed."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"{run_dir}: not a run directory (no config.json)")
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise ImportError("TensorBoard export needs the tensorboard package: pip install -e \".[tracking]\"") from e
    from golflib.workbook.resultfile import load_run_result
    from golflib.workbook.runs import load_metrics

    out = Path(out_dir) if out_dir else run_dir / "tensorboard"
    metrics = load_metrics(run_dir)
    w = SummaryWriter(log_dir=str(out))
    try:
        last = 0
        for m in metrics:
            step, t = int(m.get("step", 0)), m.get("time")
            last = max(last, step)
            if m.get("kind") == "train":
                w.add_scalar("train/loss", m["train_loss"], step, walltime=t)
                if "lr_mult" in m:
                    w.add_scalar("train/lr_mult", m["lr_mult"], step, walltime=t)
            elif m.get("kind") == "val":
                w.add_scalar("val/val_bpb", m["val_bpb"], step, walltime=t)
                w.add_scalar("val/val_loss", m["val_loss"], step, walltime=t)
        if (run_dir / "result.json").is_file():
            r = load_run_result(run_dir)
            last = max(last, int(r.training.get("steps") or 0))
            for key, e in r.scores.items():
                w.add_scalar(f"score/{key}/val_bpb", e.val_bpb, last)
            w.add_scalar("bytes/bytes_total", r.bytes_total(), last)
        cfg = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        w.add_text("config", "```\n" + json.dumps(cfg.get("config", {}), indent=1) + "\n```", 0)
    finally:
        w.close()
    return out
