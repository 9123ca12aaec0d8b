"""notebooks/30_quant_analysis.ipynb under papermill with smoke parameters, on a tiny trained run."""

import json

import nbformat
import pytest

from conftest import REPO
from golflib.workbook.notebook import run_notebook

pytestmark = pytest.mark.slow

FIGURES = ("quant_error_heatmap", "quant_bits_sweep", "quant_sdclip_pareto", "quant_gptq_vs_rtn",
           "quant_codec_comparison", "quant_budget")


def test_quant_notebook_smoke(quant_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "runs" / "qa"
    params = {"checkpoint": str(quant_run), "val_max_tokens": 2048, "calib_batches": 2, "bits_list": [4, 6],
              "classes": ["mlp", "embedding"], "k_list": [6.0, 12.85], "figures_root": str(tmp_path / "figures")}
    out = run_notebook(REPO / "notebooks" / "30_quant_analysis.ipynb", params, run_dir=run_dir, cwd=REPO)
    nb = nbformat.read(str(out), as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, errors
    for fig in FIGURES:
        assert (run_dir / "figures" / f"{fig}.png").stat().st_size > 5000, fig
        assert (tmp_path / "figures" / "30_quant_analysis" / f"{fig}.png").is_file()
    res = json.loads((run_dir / "quant_analysis.json").read_text())
    assert res["val_max_tokens"] == 2048 and res["calibration"]["batches"] == 2
    bits = {(r["class"], r["bits"]): r for r in res["bits_sweep"]}
    assert set(bits) == {("mlp", 4), ("mlp", 6), ("embedding", 4), ("embedding", 6)}
    assert bits[("mlp", 4)]["artifact_bytes"] < bits[("mlp", 6)]["artifact_bytes"]  # fewer bits, fewer bytes
    k = {r["k"]: r for r in res["sdclip_sweep"]}
    assert k[6.0]["artifact_bytes"] > k[12.85]["artifact_bytes"]  # a tighter clip spreads the codes: more bytes
    g = {(r["bits"], r["method"]): r["val_bpb"] for r in res["gptq_vs_rtn"]}
    assert g[(4, "gptq")] < g[(4, "rtn")]  # GPTQ helps most at low bits
    assert res["budgets"]["mixed+entropy"]["artifact_bytes"] < res["budgets"]["int8+zlib"]["artifact_bytes"]
    assert {e["class"] for e in res["errors"] if e["kind"] == "per_row"} == {"embedding", "attention", "mlp"}
