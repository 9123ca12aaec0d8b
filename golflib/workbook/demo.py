"""``golf demo``: the main job on the embedded corpus.

Prepares the embedded corpus (tokenizer + shards + manifest), then executes ``notebooks/00_data.ipynb`` and
``notebooks/10_train.ipynb`` with the ``cpu-tiny`` preset into one fresh run directory — training through the run's
own bundled ``train_gpt.py`` (the compressed form), so the records folder's log and ``bytes_total`` come from the file
it ships — then
``notebooks/50_record.ipynb`` collecting that run into a records-style folder under ``<run_dir>/records/``
(track ``non_record_16mb``: a CPU run is not a 10-minute 8×H100 record, so the time limits are reported, not
required; the score is doc-LoRA TTT on the int8 artifact; a record the compliance checks refuse is reported, the
run kept), and prints the headline numbers (also stored in the run's ``result.json``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from papermill.exceptions import PapermillExecutionError

from golflib.data.prepare import prepare_dataset
from golflib.runlog import create_run_dir
from golflib.workbook.notebook import run_notebook
from golflib.workbook.runs import update_result
from golflib.workbook.training import format_summary, summarize

DEMO_TRAIN_SECONDS = 420.0
DEMO_RECORD_NAME = "golf-demo-cpu-tiny"


def run_demo(*, notebooks_dir: str | os.PathLike = "notebooks", runs_root: str | os.PathLike = "runs",
             data_root: str | os.PathLike = "data", figures_root: str | os.PathLike = "figures",
             train_seconds: float = DEMO_TRAIN_SECONDS, nproc: int = 1, smoke: bool = False,
             echo=print) -> dict[str, Any]:
    """Run the demo; returns the summary dict (see :func:`golflib.workbook.training.summarize`)."""
    t0 = time.time()
    notebooks_dir = Path(notebooks_dir)
    echo("[demo] preparing the embedded corpus (Wikipedia vital-article summaries, CC BY-SA 4.0)")
    entry = prepare_dataset(data_root)
    s = entry["stats"]
    echo(f"[demo] dataset {entry['name']}: {s['docs_train']} train / {s['docs_val']} val docs, "
         f"{s['tokens_train']:,} train / {s['tokens_val']:,} val tokens, {s['bytes_val']:,} val bytes")
    run_dir = create_run_dir(runs_root, slug="demo")
    echo(f"[demo] run directory: {run_dir}")
    common = {"figures_root": str(figures_root), "data_root": str(data_root)}
    echo("[demo] executing notebooks/00_data.ipynb")
    run_notebook(notebooks_dir / "00_data.ipynb", {**common, "prepare": False}, run_dir=run_dir)
    echo(f"[demo] executing notebooks/10_train.ipynb (cpu-tiny through its bundled train_gpt.py, {train_seconds:.0f} s "
         f"of training, nproc={nproc})")
    run_notebook(notebooks_dir / "10_train.ipynb",
                 {**common, "preset": "cpu-tiny", "nproc": nproc, "max_wallclock_seconds": float(train_seconds),
                  "smoke": smoke, "bundle": "compressed"}, run_dir=run_dir)
    echo("[demo] executing notebooks/50_record.ipynb (records-style folder from this run)")
    refused = None
    try:
        run_notebook(notebooks_dir / "50_record.ipynb",
                     {"seeds_dir": str(run_dir), "name": DEMO_RECORD_NAME, "track": "non_record_16mb",
                      "score": "ttt/lora", "records_root": str(Path(run_dir) / "records"),
                      "figures_root": str(figures_root), "data_root": str(data_root),
                      "blurb": "golf demo: the cpu-tiny preset trained on 2 CPU cores on the embedded Wikipedia "
                               "corpus"},
                     run_dir=run_dir)
    except PapermillExecutionError as e:  # a refused record (e.g. compliance) keeps the trained run and its scores
        if e.ename != "ComplianceError":
            raise
        refused = str(e.evalue)
        echo(f"[demo] records folder refused (the executed notebook is in the run directory): {refused}")
    summary = summarize(run_dir)
    if refused is not None:
        summary["record_refused"] = refused
    summary["demo_seconds"] = round(time.time() - t0, 1)
    update_result(run_dir, demo=summary)
    echo("[demo] results")
    echo(format_summary(summary))
    echo(json.dumps({"run_dir": str(run_dir)}))
    return summary
