"""notebooks/20_ttt_sweep.ipynb with smoke parameters, and the sweep's resumability."""

import json

import nbformat
import pytest

from conftest import REPO
from golflib.workbook.notebook import notebook_parameters, run_notebook
from golflib.workbook.ttt_sweep import grid_points, run_sweep

pytestmark = pytest.mark.slow


def test_ttt_sweep_notebook_smoke_and_resume(ttt_run, tmp_path, monkeypatch):
    import papermill

    nb_path = REPO / "notebooks" / "20_ttt_sweep.ipynb"
    assert set(papermill.inspect_notebook(str(nb_path))) == set(notebook_parameters(nb_path))  # papermill parses all
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "sweep.jsonl"
    params = dict(source_run=str(ttt_run), kinds=["chunked", "lora"], lrs=[0.003, 0.03], epochs=[1], freezes=[0, 1],
                  optimizers=["sgd"], chunks=[512], val_max_tokens=2048, results_file=str(results),
                  figures_root=str(tmp_path / "figures"))
    out = run_notebook(nb_path, params, run_dir=tmp_path / "nbrun")
    nb = nbformat.read(str(out), as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)
    assert any("<table" in o.get("data", {}).get("text/html", "") for o in outputs)  # tables are DataFrames
    assert "all points legal" in text and "freeze=0: best lr" in text and "freeze=1: best lr" in text
    for fig in ("ttt_heatmap_lr_epochs", "ttt_chunk_curves", "ttt_delta_vs_seconds", "ttt_lr_sweep"):
        assert (tmp_path / "nbrun" / "figures" / f"{fig}.png").stat().st_size > 5000, fig
        assert (tmp_path / "figures" / "20_ttt_sweep" / f"{fig}.png").is_file()
    grid = dict(kind=["chunked", "lora"], lr=[0.003, 0.03], epochs=[1], freeze=[0, 1], optimizer=["sgd"], chunk=[512])
    assert len(grid_points(grid)) == 4 + 2  # lora has no epochs/freeze/optimizer/chunk axes
    lines = results.read_text().splitlines()
    assert len(lines) == 1 + 6 and all(json.loads(x)["legal"] for x in lines)
    # resume: the same grid plus one lr computes only the new points
    rows = run_sweep(ttt_run, {**grid, "lr": [0.003, 0.03, 0.1]}, results, val_max_tokens=2048, echo=None)
    assert [r["cached"] for r in rows].count(False) == 3  # 2 chunked (freeze 0/1) + 1 lora at lr 0.1
    assert len(results.read_text().splitlines()) == 1 + 6 + 3
    ref = rows[0]
    assert ref["point"] == {"kind": "none", "chunk": 512} and ref["delta_bpb"] == 0.0 and ref["cached"]
