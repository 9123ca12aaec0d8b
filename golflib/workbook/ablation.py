"""Single-field ablations: train a base preset and variants that each change one config field, same wall-clock and
seeds, and tabulate Δval_bpb against the base (behind ``notebooks/11_ablation.ipynb``).

Each (variant, seed) trains as a torchrun subprocess into ``<points_dir>/<variant>_s<seed>/`` (default
``<run_dir>/ablation``); a finished point (its ``result.json`` exists) is reused, so an interrupted ablation resumes
where it stopped when ``points_dir`` names the earlier run's folder.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from golflib.presets import resolve
from golflib.workbook.launch import launch_training
from golflib.workbook.runs import load_result


def variant_name(change: Mapping[str, Any]) -> str:
    """``{"XSA_LAST_N": 4}`` → ``XSA_LAST_N=4``; the empty change is ``base``."""
    if not change:
        return "base"
    return ",".join(f"{k}={v}" for k, v in change.items())


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", name)[:80]


def points_dir(run_dir: str | os.PathLike, resume_from: str | os.PathLike | None) -> Path:
    """Where the points live: ``<resume_from>/ablation`` when resuming an earlier run, else ``<run_dir>/ablation``.
    Raises ``FileNotFoundError`` when ``resume_from`` has no ablation folder."""
    if resume_from:
        path = Path(resume_from) / "ablation"
        if not path.is_dir():
            raise FileNotFoundError(f"resume_from={resume_from}: no ablation/ folder to resume")
        return path
    return Path(run_dir) / "ablation"


def check_changes(base: str, changes: Sequence[Mapping[str, Any]], overrides: Mapping[str, Any], scale: float) -> None:
    """Resolve every variant up front so a typo fails before hours of training (raises ConfigError)."""
    for change in changes:
        resolve(base, {**overrides, **change}, scale=scale)


def run_ablation(run_dir: str | os.PathLike, base: str, changes: Sequence[Mapping[str, Any]], seeds: Sequence[int],
                 *, overrides: Mapping[str, Any] | None = None, scale: float = 1.0,
                 max_wallclock_seconds: float | None = None, nproc: int = 1,
                 points_dir: str | os.PathLike | None = None,
                 echo: Callable[[str], None] | None = print) -> list[dict[str, Any]]:
    """Train the base and every variant for every seed; returns one row per (variant, seed) with its post-quant
    and sliding val_bpb, steps and bytes. The base (empty change) is always included first."""
    overrides = dict(overrides or {})
    if max_wallclock_seconds is not None:
        overrides["MAX_WALLCLOCK_SECONDS"] = float(max_wallclock_seconds)
    variants = [{}] + [dict(c) for c in changes if c]
    check_changes(base, variants, overrides, scale)
    rows = []
    for change in variants:
        name = variant_name(change)
        for seed in seeds:
            point = Path(points_dir or Path(run_dir) / "ablation") / f"{_slug(name)}_s{seed}"
            if not (point / "result.json").is_file():
                if echo:
                    echo(f"[ablation] training {name} seed {seed}")
                point.mkdir(parents=True, exist_ok=True)
                launch_training(point, base, {**overrides, **change, "SEED": seed}, nproc=nproc, scale=scale,
                                echo=None)
            r = load_result(point)
            group = "mixed" if r.scored_artifact == "mixed" else "quantized"  # the artifact the run scores
            std, slide = r.score(f"{group}/standard"), r.scores.get(f"{group}/sliding")
            rows.append({"variant": name, "change": change, "seed": seed, "run": str(point),
                         "val_bpb": std.val_bpb, "val_loss": std.val_loss,
                         "sliding_val_bpb": slide.val_bpb if slide else None,
                         "steps": r.training["steps"], "bytes_total": r.bytes_total("int8")})
    with open(Path(run_dir) / "ablation.json", "w", encoding="utf-8") as fh:
        json.dump(rows, fh, indent=2)
    return rows


def summarize_ablation(rows: Sequence[Mapping[str, Any]], metric: str = "val_bpb") -> list[dict[str, Any]]:
    """Per variant: mean, sample std (0 for one seed), n, and Δ of the mean vs the base (negative = better)."""
    by: dict[str, list[float]] = {}
    for r in rows:
        by.setdefault(r["variant"], []).append(float(r[metric]))
    if "base" not in by:
        raise ValueError("ablation rows have no 'base' variant")
    base_mean = sum(by["base"]) / len(by["base"])
    out = []
    for name, vals in by.items():
        n = len(vals)
        mean = sum(vals) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
        out.append({"variant": name, "n": n, "mean": mean, "std": std, "delta_vs_base": mean - base_mean})
    return out
