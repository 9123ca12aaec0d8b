"""notebooks/40_ngram.ipynb with smoke parameters on the shared tiny TTT run."""

import json

import nbformat
import pytest

from conftest import REPO
from golflib.workbook.notebook import notebook_parameters, run_notebook

pytestmark = pytest.mark.slow


def test_ngram_notebook_smoke(ttt_run, tmp_path, monkeypatch):
    import papermill

    nb_path = REPO / "notebooks" / "40_ngram.ipynb"
    assert set(papermill.inspect_notebook(str(nb_path))) == set(notebook_parameters(nb_path))
    monkeypatch.chdir(tmp_path)
    params = dict(source_run=str(ttt_run), val_max_tokens=2048, protocols=["sliding", "chunked"], max_orders=[2, 4],
                  schedules=["entropy", "fixed"], tilt_betas=[0.0, 2.0], buckets_940=[0, 4194304], mass_rows=2,
                  figures_root=str(tmp_path / "figures"))
    out = run_notebook(nb_path, params, run_dir=tmp_path / "nbrun")
    nb = nbformat.read(str(out), as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, errors
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)
    assert any("<table" in o.get("data", {}).get("text/html", "") for o in outputs)  # tables are DataFrames
    assert "all points legal" in text and "best on sliding" in text and "best on chunked" in text
    assert "golflib mixer: Σ_v p(v) in [1.000000000000, 1.000000000000]" in text and "C2 violations 0" in text
    assert "mixer alone, V=8192" in text
    for fig in ("ngram_order_schedule", "ngram_bucket_gains", "ngram_implied_mass", "ngram_throughput"):
        assert (tmp_path / "nbrun" / "figures" / f"{fig}.png").stat().st_size > 5000, fig
        assert (tmp_path / "figures" / "40_ngram" / f"{fig}.png").is_file()
    summary = json.loads((tmp_path / "nbrun" / "ngram_lab.json").read_text())
    assert len(summary["sweep"]) == 2 * (1 + 2 * 2 * 2) and set(summary["best"]) == {"sliding", "chunked"}
