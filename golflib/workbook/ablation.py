"""Single-field ablations: train a base preset and variants that each change one config field, same wall-clock and
seeds, and tabulate Δval_bpb against the base (behind ``notebooks/11_ablation.ipynb``).

Each (variant, seed) trains as a torchrun subprocess into ``<points_dir>/<variant>_s<seed>/`` (default
``<run_dir>/ablation``); a finished point (its ``result.json`` exists) is reused, so an interrupted ablation resumes
where it stopped when ``points_dir`` names the earlier run's folder. The points run where an executor says
(:mod:`golflib.workbook.executor`: here, in parallel processes, or on Slurm); ``sweep.json`` keeps their states.
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


def ablation_job(point_dir: str, base: str, overrides: Mapping[str, Any], nproc: int, scale: float) -> dict:
    """One (variant, seed) where an executor runs it: a torchrun training into ``point_dir``; returns
    ``{"run_dir", "val_bpb"}`` (the scored artifact's standard val_bpb). Raises
    :class:`golflib.workbook.launch.TrainingFailed`."""
    r = launch_training(Path(point_dir), base, dict(overrides), nproc=nproc, scale=scale, echo=None)
    return {"run_dir": point_dir, "val_bpb": _row_scores(r)["val_bpb"]}


def _row_scores(r) -> dict:
    group = "mixed" if r.scored_artifact == "mixed" else "quantized"  # the artifact the run scores
    std, slide = r.score(f"{group}/standard"), r.scores.get(f"{group}/sliding")
    return {"val_bpb": std.val_bpb, "val_loss": std.val_loss, "sliding_val_bpb": slide.val_bpb if slide else None,
            "steps": r.training["steps"], "bytes_total": r.bytes_total("int8")}


def run_ablation(run_dir: str | os.PathLike, base: str, changes: Sequence[Mapping[str, Any]], seeds: Sequence[int],
                 *, overrides: Mapping[str, Any] | None = None, scale: float = 1.0,
                 max_wallclock_seconds: float | None = None, nproc: int = 1,
                 points_dir: str | os.PathLike | None = None,
                 echo: Callable[[str], None] | None = print, executor=None,
                 retry_failed: bool = False) -> list[dict[str, Any]]:
    """Train the base and every variant for every seed; returns one row per (variant, seed) with its post-quant
    and sliding val_bpb, steps, bytes and ``state``. The base (empty change) is always included first.

    ``executor`` (:class:`golflib.workbook.executor.ExecutorSettings` or its dict; default local, one after
    another) trains the points as parallel processes or a Slurm job array; ``sweep.json`` in the points folder
    keeps each point's state, job id and log (``golf sweep status``). A finished point is never trained again; a
    failed one is kept (row ``state`` ``failed``, ``val_bpb`` None) and retried only with ``retry_failed``, its
    old directory moved aside to ``<point>.failed-<n>``."""
    from golflib.workbook.executor import ExecutorSettings, Task, execute
    from golflib.workbook.sweepstate import SweepState, keep_aside

    settings = ExecutorSettings.from_value(executor)
    nproc = settings.nproc(nproc)
    overrides = dict(overrides or {})
    if max_wallclock_seconds is not None:
        overrides["MAX_WALLCLOCK_SECONDS"] = float(max_wallclock_seconds)
    variants = [{}] + [dict(c) for c in changes if c]
    check_changes(base, variants, overrides, scale)
    folder = Path(points_dir or Path(run_dir) / "ablation")
    state = SweepState(folder, "ablation", executor=settings.to_dict())
    plan = []
    for change in variants:
        name = variant_name(change)
        for seed in seeds:
            point = folder / f"{_slug(name)}_s{seed}"
            key = point.name
            state.plan(key, f"{name} seed {seed}", str(point))
            if (point / "result.json").is_file() and state.state(key) != "done":
                state.points[key]["state"] = "done"  # finished before this state file existed
            plan.append((change, name, seed, point, key))
    state.save()
    todo = set(state.todo([k for *_, k in plan], retry_failed=retry_failed))
    tasks = []
    for change, name, seed, point, key in plan:
        if key not in todo:
            continue
        keep_aside(point)  # a failed or interrupted attempt is kept; the retry starts fresh
        point.mkdir(parents=True, exist_ok=True)
        tasks.append(Task(key, ablation_job, (str(point), base, {**overrides, **change, "SEED": seed}, nproc, scale),
                          label=f"{name} seed {seed}", run_dir=str(point)))

    def finished(t: Task, o) -> None:
        state.finished(t.key, o.state, job_id=o.job_id, log=o.log, error=o.error, seconds=o.seconds,
                       score=o.result.get("val_bpb") if o.state == "done" else None)
        if echo:
            echo(f"[ablation] {t.label}: {o.state}" + (f" (log {o.log})" if o.state == "failed" else ""))

    if echo:
        for t in tasks:
            echo(f"[ablation] training {t.label} ({settings.kind})")
    execute(tasks, settings, folder / "jobs", job_name="ablation", on_outcome=finished, echo=echo)
    rows = []
    for change, name, seed, point, key in plan:
        row = {"variant": name, "change": change, "seed": seed, "run": str(point), "state": state.state(key)}
        if (point / "result.json").is_file():
            row.update(_row_scores(load_result(point)), state="done")
        else:
            row.update(val_bpb=None, val_loss=None, sliding_val_bpb=None, steps=None, bytes_total=None,
                       error=state.points[key].get("error", ""), log=state.points[key].get("log", ""))
        rows.append(row)
    with open(Path(run_dir) / "ablation.json", "w", encoding="utf-8") as fh:
        json.dump(rows, fh, indent=2)
    return rows


def summarize_ablation(rows: Sequence[Mapping[str, Any]], metric: str = "val_bpb") -> list[dict[str, Any]]:
    """Per variant: mean, sample std (0 for one seed), n (finished seeds), failed (seeds that failed: reported, not
    averaged) and Δ of the mean vs the base (negative = better; None when the base or the variant has no finished
    seed). Raises ``ValueError`` when the rows have no base variant."""
    by: dict[str, list[float]] = {}
    failed: dict[str, int] = {}
    for r in rows:
        by.setdefault(r["variant"], [])
        failed.setdefault(r["variant"], 0)
        if r.get(metric) is None:
            failed[r["variant"]] += 1
        else:
            by[r["variant"]].append(float(r[metric]))
    if "base" not in by:
        raise ValueError("ablation rows have no 'base' variant")
    base_mean = sum(by["base"]) / len(by["base"]) if by["base"] else None
    out = []
    for name, vals in by.items():
        n = len(vals)
        mean = sum(vals) / n if n else None
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
        out.append({"variant": name, "n": n, "failed": failed[name], "mean": mean, "std": std,
                    "delta_vs_base": None if mean is None or base_mean is None else mean - base_mean})
    return out
