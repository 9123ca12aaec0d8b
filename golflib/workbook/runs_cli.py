"""The ``golf`` commands over many runs (issue 18): ``golf sweep status``, ``golf runs index``, ``golf runs list``,
``golf runs tensorboard``, ``golf compare``, and the ``--executor`` options that ``golf seeds`` and ``golf run``
share."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from golflib.workbook.executor import KINDS, ExecutorSettings


def add_executor_args(p: argparse.ArgumentParser) -> None:
    """``--executor KIND`` and repeatable ``--executor-opt NAME=VALUE`` (the fields of
    :class:`golflib.workbook.executor.ExecutorSettings`), ``--dry-run``."""
    p.add_argument("--executor", choices=KINDS, default="local",
                   help="where the runs go: here one after another, parallel local processes (submitit), or Slurm")
    p.add_argument("--executor-opt", action="append", default=[], metavar="NAME=VALUE",
                   help="executor field, e.g. partition=h100, gpus_per_node=8, time_min=25, max_parallel=3, "
                        "account=..., nodes=2, setup='module load cuda' (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="Slurm: print the submission and submit nothing")


def executor_from_args(a: argparse.Namespace) -> ExecutorSettings:
    """The settings of ``--executor``/``--executor-opt``/``--dry-run``; values are JSON when they parse as JSON
    (numbers, lists), else strings. Raises :class:`~golflib.errors.ConfigError` naming a bad field."""
    from golflib.errors import ConfigError

    d: dict = {"kind": a.executor, "dry_run": bool(a.dry_run)}
    for item in a.executor_opt:
        if "=" not in item:
            raise ConfigError(f"--executor-opt {item!r}: expected NAME=VALUE")
        k, v = item.split("=", 1)
        try:
            val = json.loads(v)
        except json.JSONDecodeError:
            val = v
        if k.strip() == "setup":
            val = d.get("setup", []) + ([val] if isinstance(val, str) else list(val))
        d[k.strip()] = val
    return ExecutorSettings.from_value(d)


def cmd_sweep_status(a) -> int:
    from golflib.workbook.sweepstate import load_state, status_text

    print(status_text(a.dir), end="")
    return 1 if load_state(a.dir).counts()["failed"] else 0


def cmd_runs_index(a) -> int:
    from golflib.workbook.runindex import build_index, query

    db = build_index(a.runs_root, a.db)
    n = query(db, "SELECT state, count(*) AS n FROM runs GROUP BY state ORDER BY state")
    print(f"{db}: " + (", ".join(f"{r['n']} {r['state']}" for r in n) or "no runs"))
    return 0


def cmd_runs_list(a) -> int:
    from tabulate import tabulate

    from golflib.workbook.runindex import INDEX_FILE, build_index, query

    db = Path(a.db) if a.db else Path(a.runs_root) / INDEX_FILE
    if not a.no_rebuild:
        build_index(a.runs_root, db)
    rows = query(db, a.sql or "SELECT run_id, state, preset, seed, steps, scored_key, round(val_bpb, 5) AS val_bpb, "
                             "bytes_total FROM runs ORDER BY val_bpb IS NULL, val_bpb")
    print(tabulate(rows, headers="keys", tablefmt="github") if rows else "no rows")
    return 0


def cmd_runs_tensorboard(a) -> int:
    from golflib.workbook.tracking import export_tensorboard

    print(f"tensorboard --logdir {export_tensorboard(a.run, a.out)}")
    return 0


def cmd_compare(a) -> int:
    from golflib.workbook.compare import compare_runs, compare_text, plot_compare

    c = compare_runs(a.runs)
    print(compare_text(c), end="")
    if a.figure:
        fig = plot_compare(c, save_to=[a.figure])
        print("figure: " + ", ".join(fig.saved_paths))
    return 0


def add_parsers(sub) -> None:
    """Register ``sweep``, ``runs`` and ``compare`` on the ``golf`` subparsers."""
    sw = sub.add_parser("sweep", help="the state of a sweep, ablation or seeds directory")
    sws = sw.add_subparsers(dest="sweep_cmd", required=True)
    st = sws.add_parser("status", help="every point's state, job id, val_bpb and log (exit 1 when any failed)")
    st.add_argument("dir", help="the folder holding sweep.json (a TTT sweep's results folder, <run>/ablation, "
                                "a seeds directory)")
    st.set_defaults(fn=cmd_sweep_status)

    ru = sub.add_parser("runs", help="the runs index: one SQLite file over runs/ (rebuilt from the run folders)")
    rus = ru.add_subparsers(dest="runs_cmd", required=True)
    ix = rus.add_parser("index", help="rebuild runs/index.sqlite from the run directories")
    ix.add_argument("--runs-root", default="runs")
    ix.add_argument("--db", default=None, help="index file (default: <runs-root>/index.sqlite)")
    ix.set_defaults(fn=cmd_runs_index)
    ls = rus.add_parser("list", help="list runs from the index (rebuilt first), best val_bpb first")
    ls.add_argument("--runs-root", default="runs")
    ls.add_argument("--db", default=None, help="index file (default: <runs-root>/index.sqlite)")
    ls.add_argument("--sql", default=None, help="your own query on the tables runs, scores, config")
    ls.add_argument("--no-rebuild", action="store_true", help="query the index as it is")
    ls.set_defaults(fn=cmd_runs_list)

    tb = rus.add_parser("tensorboard", help="export a run's metrics and scores as TensorBoard event files")
    tb.add_argument("run", help="a run directory")
    tb.add_argument("--out", default=None, help="event folder (default: <run>/tensorboard)")
    tb.set_defaults(fn=cmd_runs_tensorboard)

    co = sub.add_parser("compare", help="runs side by side: config diff, scores with Δbpb/Δnats, bytes, timings")
    co.add_argument("runs", nargs="+", help="two or more run directories (the first is the reference)")
    co.add_argument("--figure", default=None, help="folder for compare.png/.svg (the curves overlaid)")
    co.set_defaults(fn=cmd_compare)
