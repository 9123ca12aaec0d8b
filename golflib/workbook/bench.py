"""``golf bench NAME``: benchmarks that write JSON (speed and size goals live here, never in timed tests).

Each benchmark module registers a function with :func:`register`; the function takes the parsed ``--run`` (a run
directory or None) and returns a JSON-serializable dict. Results are printed and written to
``runs/bench/<name>-<YYYYMMDD-HHMMSS>.json`` (or ``--out``).
"""

from __future__ import annotations

import importlib
import json
import platform
import time
from pathlib import Path
from typing import Any, Callable

import torch

from golflib.runlog import write_json

BENCHES: dict[str, Callable[..., dict[str, Any]]] = {}
# Modules that register benchmarks when imported (one line per benchmark module).
BENCH_MODULES = [
    "golflib.workbook.bench_train",
    "golflib.workbook.bench_quant",
    "golflib.workbook.bench_ttt",
    "golflib.workbook.bench_ngram",
    "golflib.workbook.bench_optim",
    "golflib.workbook.bench_muon",
    "golflib.workbook.bench_loader",
]


def register(name: str):
    def deco(fn):
        BENCHES[name] = fn
        return fn

    return deco


def load_benches() -> dict[str, Callable[..., dict[str, Any]]]:
    for mod in BENCH_MODULES:
        importlib.import_module(mod)
    return BENCHES


def run_bench(name: str, run_dir: str | None = None, out: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """Run benchmark ``name``; returns its result with machine info, also written as JSON."""
    benches = load_benches()
    if name not in benches:
        raise KeyError(f"unknown benchmark {name!r}; known: {sorted(benches)}")
    t0 = time.time()
    result = benches[name](run_dir=run_dir, **kwargs)
    result = {"bench": name, "seconds": round(time.time() - t0, 2), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "machine": platform.machine(), "python": platform.python_version(),
              **result}
    path = Path(out) if out else Path("runs") / "bench" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, result)
    result["written_to"] = str(path)
    print(json.dumps(result, indent=2))
    return result
