"""TTT sweeps over a trained artifact (``notebooks/20_ttt_sweep.ipynb``): kind × lr × epochs × freeze × optimizer ×
chunk size, resumable, every point with its ledger verdict.

A grid is a dict of axis → values with axes ``kind`` (chunked | lora | phased), ``lr``, ``epochs``, ``freeze``,
``optimizer``, ``chunk``. Each kind maps the axes it has onto its config fields (:data:`AXIS_FIELDS`); axes a kind
does not have are dropped from its points, so duplicates collapse. Results are appended, one JSON object per line,
to a results file (default ``<run_dir>/ttt_sweep.jsonl``); a point whose key (point + evaluation context) is
already in the file is not recomputed; ``sweep.json`` beside it keeps every point's state
(:mod:`golflib.workbook.sweepstate`) and the points can run in parallel processes or on Slurm
(:mod:`golflib.workbook.executor`). The no-TTT reference is chunked TTT with 0 epochs, which is exactly the
sliding-window evaluation and also gives a per-chunk running curve.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from golflib.config import Config
from golflib.data.bytecount import ByteCounter, load_byte_counter
from golflib.data.loader import load_validation_tokens
from golflib.eval.ledger import LegalityError
from golflib.eval.protocols import eval_window
from golflib.eval.ttt import run_ttt_kind
from golflib.quant.export import load_artifact_model
from golflib.workbook.runs import find_artifact

AXES = ("kind", "lr", "epochs", "freeze", "optimizer", "chunk")
AXIS_FIELDS: dict[str, dict[str, str]] = {
    "chunked": {"lr": "TTT_LR", "epochs": "TTT_EPOCHS", "freeze": "TTT_FREEZE_BLOCKS", "optimizer": "TTT_OPTIMIZER",
                "chunk": "TTT_CHUNK_TOKENS"},
    "lora": {"lr": "TTT_LORA_LR"},  # its chunk (TTT_CHUNK_SIZE, ~48 tokens per step) is another unit: not an axis
    "phased": {"lr": "GLOBAL_TTT_LR", "epochs": "GLOBAL_TTT_EPOCHS", "chunk": "GLOBAL_TTT_CHUNK_TOKENS"},
}
REFERENCE = {"kind": "none"}  # the no-TTT point (+ the grid's smallest chunk, for a fine per-chunk curve)


def grid_points(grid: Mapping[str, list]) -> list[dict]:
    """Cartesian product of ``grid`` (``kind`` required), each point reduced to the axes of its kind, duplicates
    removed (first occurrence kept). Raises ``ValueError`` for an unknown axis or kind."""
    unknown = set(grid) - set(AXES)
    if unknown or "kind" not in grid:
        raise ValueError(f"sweep grid axes must include 'kind' and be among {AXES}; got {sorted(grid)}")
    bad = [k for k in grid["kind"] if k not in AXIS_FIELDS]
    if bad:
        raise ValueError(f"unknown TTT kind(s) {bad}; expected {sorted(AXIS_FIELDS)}")
    names = list(grid)
    out, seen = [], set()
    for values in itertools.product(*(list(grid[n]) for n in names)):
        full = dict(zip(names, values))
        point = {"kind": full["kind"], **{a: v for a, v in full.items() if a in AXIS_FIELDS[full["kind"]]}}
        key = json.dumps(point, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(point)
    return out


def point_overrides(point: Mapping[str, Any]) -> dict[str, Any]:
    """Config overrides of one point (``{"TTT_LR": 0.01, ...}``)."""
    if point["kind"] == "none":
        return {"TTT_EPOCHS": 0, **({"TTT_CHUNK_TOKENS": point["chunk"]} if "chunk" in point else {})}
    return {AXIS_FIELDS[point["kind"]][a]: v for a, v in point.items() if a != "kind"}


@dataclass
class SweepContext:
    """What every point of a sweep shares: the artifact model, the run's config (plus ``base_overrides``), byte
    tables, the val stream at the TTT window length, and the context string that keys cached results."""

    run_dir: Path
    model: torch.nn.Module
    cfg: Config
    luts: ByteCounter
    val_tokens: torch.Tensor
    context: str


def load_context(run_dir: str | os.PathLike, *, val_max_tokens: int | None = None,
                 base_overrides: Mapping[str, Any] | None = None) -> SweepContext:
    """Load a finished run's artifact and val stream. ``val_max_tokens`` (None = the run's own) cuts the stream
    for quick sweeps; ``base_overrides`` (config fields) apply to every point. Raises ``FileNotFoundError`` when
    the run has no artifact."""
    run_dir = Path(run_dir)
    cfg = Config.from_json_file(run_dir / "config.json").replace(dict(base_overrides or {}), source="sweep")
    model = load_artifact_model(find_artifact(run_dir))
    vmax = cfg.train.val_max_tokens if val_max_tokens is None else val_max_tokens
    val = load_validation_tokens(cfg.data.val_glob, eval_window(cfg), cfg.model.vocab_size, vmax)
    luts = load_byte_counter(cfg.data, cfg.model.vocab_size, cfg.model.bos_id)
    context = json.dumps({"artifact": find_artifact(run_dir).name, "val_targets": int(val.numel() - 1),
                          "base": dict(sorted((base_overrides or {}).items()))}, sort_keys=True, default=str)
    return SweepContext(run_dir, model, cfg, luts, val, context)


def point_key(point: Mapping[str, Any], context: str) -> str:
    return json.dumps({"point": dict(point), "context": json.loads(context)}, sort_keys=True, default=str)


def run_point(ctx: SweepContext, point: Mapping[str, Any]) -> dict:
    """Evaluate one point on a fresh copy of the artifact model. An illegal protocol (strict ledger) is recorded
    with ``legal: False`` and the error instead of a score."""
    kind = "chunked" if point["kind"] == "none" else point["kind"]
    cfg = ctx.cfg.replace(point_overrides(point), source=f"sweep point {dict(point)}")
    row: dict[str, Any] = {"point": dict(point), "key": point_key(point, ctx.context)}
    try:
        res = run_ttt_kind(kind, copy.deepcopy(ctx.model), ctx.val_tokens, ctx.luts, cfg)
    except LegalityError as e:
        return {**row, "legal": False, "verdict": f"illegal: {e}", "val_bpb": None}
    rep = res.ledger
    row.update({"val_bpb": res.val_bpb, "val_loss": res.val_loss, "seconds": res.seconds, "tokens": res.tokens,
                "legal": bool(rep["legal"]),
                "verdict": ("legal" if rep["stream_order"] else "legal (declared order)") if rep["legal"]
                else "illegal", "ledger": {k: rep[k] for k in ("n_scored", "n_targets", "n_updates", "order",
                                                                 "violation_counts")},
                "curve": res.details.get("curve", [])})
    return row


def load_results(path: str | os.PathLike) -> dict[str, dict]:
    """``{key: row}`` of a results file (empty when it does not exist); raises ``ValueError`` naming a bad line."""
    path = Path(path)
    out: dict[str, dict] = {}
    if path.is_file():
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{i}: not valid JSON ({e})") from None
                out[row["key"]] = row
    return out


def sweep_job(run_dir: str, point: Mapping[str, Any], val_max_tokens: int | None,
              base_overrides: Mapping[str, Any] | None) -> dict:
    """One point where an executor runs it (another process, a Slurm node): load the run's artifact and val
    stream (:func:`load_context`) and evaluate the point (:func:`run_point`); returns its row."""
    return run_point(load_context(run_dir, val_max_tokens=val_max_tokens, base_overrides=base_overrides), point)


def run_sweep(run_dir: str | os.PathLike, grid: Mapping[str, list], results_path: str | os.PathLike | None = None,
              *, val_max_tokens: int | None = None, base_overrides: Mapping[str, Any] | None = None,
              echo: Callable[[str], None] | None = print, executor=None, retry_failed: bool = False) -> list[dict]:
    """Run every point of ``grid`` (plus the no-TTT reference) that is not in the results file yet; returns the
    rows of this grid, reference first, each with ``delta_bpb`` (vs the reference), ``cached`` and ``state``.

    ``executor`` (:class:`golflib.workbook.executor.ExecutorSettings` or its dict; default local, in this process)
    runs the points as parallel processes or a Slurm job array. Each point's state, job id and log go to
    ``sweep.json`` beside the results file (``golf sweep status``). A point that fails is kept as ``failed`` (its
    row has ``val_bpb`` None and the error) and is not run again unless ``retry_failed``; finished points are
    never recomputed. A Slurm dry run prints the submission and leaves the points ``pending``."""
    from golflib.workbook.executor import ExecutorSettings, Task, execute
    from golflib.workbook.sweepstate import SweepState, last_line

    settings = ExecutorSettings.from_value(executor)
    ctx = load_context(run_dir, val_max_tokens=val_max_tokens, base_overrides=base_overrides)
    path = Path(results_path) if results_path else ctx.run_dir / "ttt_sweep.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    done = load_results(path)
    state = SweepState(path.parent, "ttt", executor=settings.to_dict())
    reference = {**REFERENCE, **({"chunk": min(grid["chunk"])} if grid.get("chunk") else {})}
    points = [reference] + grid_points(grid)
    keys = [point_key(pt, ctx.context) for pt in points]
    for pt, key in zip(points, keys):
        state.plan(key, json.dumps(pt))
        if key in done and state.state(key) != "done":  # finished before this state file existed
            state.points[key].update(state="done", score=done[key].get("val_bpb"))
    state.save()
    todo = set(state.todo([k for k in keys if k not in done], retry_failed=retry_failed))
    tasks = []
    for pt, key in zip(points, keys):
        if key in todo:
            args = (ctx, pt) if settings.kind == "local" else (str(ctx.run_dir), pt, val_max_tokens,
                                                                 dict(base_overrides or {}))
            tasks.append(Task(key, run_point if settings.kind == "local" else sweep_job, args, label=json.dumps(pt)))

    def finished(t: Task, o) -> None:
        if o.state == "done":
            row = {**o.result, "job_id": o.job_id}
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row, default=str) + "\n")
            done[t.key] = row
        state.finished(t.key, o.state, job_id=o.job_id, log=o.log, error=o.error, seconds=o.seconds,
                       score=o.result.get("val_bpb") if o.state == "done" else None)
        if echo is not None:
            bpb = o.result.get("val_bpb") if o.state == "done" else None
            echo(f"[sweep] {t.label} " + (f"val_bpb {'—' if bpb is None else f'{bpb:.5f}'} {o.result['verdict']} "
                                          f"{o.seconds:.1f}s" if o.state == "done" else
                                          f"FAILED (job {o.job_id}, log {o.log}): {last_line(o.error)}"))

    execute(tasks, settings, path.parent / "jobs", job_name="ttt-sweep", on_outcome=finished, echo=echo)
    rows = []
    ran = {t.key for t in tasks}
    for pt, key in zip(points, keys):
        p = state.points[key]
        if key in done:
            row = {**done[key], "cached": key not in ran, "state": "done"}
        else:
            last = last_line(p.get("error") or "") or p["state"]
            row = {"point": dict(pt), "key": key, "val_bpb": None, "legal": None, "cached": key not in ran,
                   "state": p["state"], "verdict": f"{p['state']}: {last[:160]}" if p["state"] == "failed"
                   else p["state"], "job_id": p.get("job_id", ""), "log": p.get("log", ""), "seconds": 0.0}
        if echo is not None and row["cached"] and row["state"] == "done":
            bpb = row.get("val_bpb")
            echo(f"[sweep] {json.dumps(pt)} val_bpb {'—' if bpb is None else f'{bpb:.5f}'} {row['verdict']} (cached)")
        rows.append(row)
    ref = rows[0]["val_bpb"]
    for row in rows:
        row["delta_bpb"] = None if row.get("val_bpb") is None or ref is None else row["val_bpb"] - ref
    return rows


def sweep_table(rows: list[dict]) -> list[dict]:
    """Flat rows for display: axes, val_bpb, Δbpb, seconds, verdict (sorted by val_bpb, reference first)."""
    flat = [{**{a: r["point"].get(a, "") for a in AXES}, "val_bpb": r.get("val_bpb"), "delta_bpb": r.get("delta_bpb"),
             "seconds": round(r.get("seconds", 0.0), 1), "verdict": r["verdict"]} for r in rows]
    return flat[:1] + sorted(flat[1:], key=lambda r: float("inf") if r["val_bpb"] is None else r["val_bpb"])


def best_lr_by_freeze(rows: list[dict], epochs: int | None = None) -> dict[int, dict]:
    """For chunked points (at ``epochs``, default: the largest swept), the best lr and val_bpb per freeze value:
    the numbers behind the #757-shape figure."""
    pts = [r for r in rows if r["point"]["kind"] == "chunked" and r.get("val_bpb") is not None]
    if not pts:
        return {}
    ep = max(r["point"].get("epochs", 0) for r in pts) if epochs is None else epochs
    out: dict[int, dict] = {}
    for r in pts:
        if r["point"].get("epochs") != ep:
            continue
        f = r["point"].get("freeze", 0)
        if f not in out or r["val_bpb"] < out[f]["val_bpb"]:
            out[f] = {"lr": r["point"]["lr"], "val_bpb": r["val_bpb"], "delta_bpb": r.get("delta_bpb"), "epochs": ep}
    return dict(sorted(out.items()))
