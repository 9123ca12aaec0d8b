"""notebooks/50_record.ipynb under papermill: 2 seeds of the tiny config through the bundled train_gpt.py, figures,
significance against a baseline given as parameters, and the records folder."""

import json

import nbformat
import pytest

from conftest import REPO, TINY
from golflib.workbook.notebook import run_notebook

pytestmark = pytest.mark.slow


def test_record_notebook_smoke(tmp_path, embedded_data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "runs" / "rec"
    overrides = {**TINY, "VAL_MAX_TOKENS": 0, "EVAL_STRIDE": 0}  # a record scores the full val split
    params = {"seeds": [7, 8], "overrides": overrides, "name": "NbSmoke", "base_pr": 3,
              "base_nats": [5.70, 5.72, 5.71], "records_root": str(tmp_path / "records"),
              "data_root": str(embedded_data["root"]), "figures_root": str(tmp_path / "figures")}
    out = run_notebook(REPO / "notebooks" / "50_record.ipynb", params, run_dir=run_dir, cwd=REPO, timeout=900)
    nb = nbformat.read(str(out), as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, errors
    for fig in ("seed_curves", "seed_scores", "size_budget"):
        assert (run_dir / "figures" / f"{fig}.png").stat().st_size > 5000, fig
        assert (tmp_path / "figures" / "50_record" / f"{fig}.png").is_file()
    rec = json.loads((run_dir / "record.json").read_text())
    sub = rec["submission"]
    assert sub["seeds"] == [7, 8] and sub["base_pr"] == 3 and rec["compliance"]["ok"]
    assert sub["p_value"] < 0.01 and sub["welch_df"] > 1  # ~0.3 nats better than the planted baseline
    assert (run_dir / "seeds" / "seed_7" / "train.log").is_file()
    assert sub["bytes_code"] == (run_dir / "seeds" / "train_gpt.py").stat().st_size
    folder = tmp_path / "records" / "track_10min_16mb"
    (rec_dir,) = list(folder.iterdir())
    assert rec_dir.name.endswith("_NbSmoke") and str(rec_dir) == rec["path"]
    assert {p.name for p in rec_dir.iterdir()} >= {"README.md", "submission.json", "train_gpt.py",
                                                  "train_gpt_readable.py", "requirements.txt", "train_seed7.log",
                                                  "train_seed8.log", "figures"}
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "one-sided Welch t-test" in text and "train_seed8.log" in text  # significance and the folder tree
