"""Every notebook executes under papermill with smoke parameters (the demo path runs 00 and 10)."""

import json
import subprocess
import sys

import nbformat
import pytest

from conftest import REPO
from golflib.workbook.demo import run_demo
from golflib.workbook.runs import load_result

pytestmark = pytest.mark.slow


def test_demo_smoke_executes_data_and_train_notebooks(tmp_path, embedded_data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = []
    summary = run_demo(notebooks_dir=REPO / "notebooks", runs_root=tmp_path / "runs", data_root=embedded_data["root"],
                       figures_root=tmp_path / "figures", train_seconds=12, smoke=True, echo=lines.append)
    run_dir = tmp_path / "runs" / summary["run_dir"].split("/")[-1]
    assert run_dir.name.endswith("_demo")
    for nb in ("00_data.ipynb", "10_train.ipynb"):
        executed = nbformat.read(str(run_dir / nb), as_version=4)
        errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert not errors, errors
        assert executed.metadata["papermill"]["parameters"]["run_dir"] == str(run_dir)
    for fig in ("doc_token_lengths", "training_curves", "size_budget", "scores"):
        assert (run_dir / "figures" / f"{fig}.png").stat().st_size > 5000, fig
    assert (tmp_path / "figures" / "10_train" / "training_curves.png").is_file()
    assert (tmp_path / "figures" / "00_data" / "doc_token_lengths.png").is_file()
    result = load_result(run_dir)
    # resolved once, in the notebook, and baked into the run's own train_gpt.py, which trained (what you run is what
    # you submit): the launcher's meta in script.json, the script's own config.json, its bytes counted as the code
    import hashlib

    from golflib.runlog import metric_stream

    script = run_dir / "train_gpt.py"
    launched = json.loads((run_dir / "script.json").read_text())
    assert launched["preset"] == "cpu-tiny" and launched["script_stats"]["form"] == "compressed"
    assert json.loads((run_dir / "config.json").read_text())["meta"]["bundled"] is True
    assert (run_dir / "console.log").read_text().splitlines()[0].endswith(f"{script} --run-dir {run_dir}")
    log = (run_dir / "train.log").read_text()
    size, sha = script.stat().st_size, hashlib.sha256(script.read_bytes()).hexdigest()
    assert f"code:train_gpt.py: this single bundled file bytes:{size} sha256:{sha} " in log.split("Hyperparameters:")[0]
    assert f"Code size: {size} bytes" in log and result.code_bytes == size
    assert log.rstrip("\n").endswith(script.read_text().rstrip("\n"))  # the source at the end, verbatim ...
    assert "b85decode" not in metric_stream(log) and "step:" in metric_stream(log)  # ... out of the metric stream
    demo = result.extras["demo"]
    assert result.extras["reference"]["unigram_val_bpb"] == demo["unigram_val_bpb"]  # added by notebook 10
    assert demo == {k: summary[k] for k in demo}
    for key in ("tokens_trained", "val_bpb_pre_quant", "val_bpb_post_quant", "val_bpb_sliding", "unigram_val_bpb",
                "artifact_bytes", "bytes_total"):
        assert demo[key] is not None, key
    assert demo["val_bpb_post_quant"] < demo["unigram_val_bpb"]
    # int8+zlib and int6+entropy side by side (issue 4)
    assert demo["mixed_scheme"] == "int6e8+entropy" and demo["mixed_artifact_bytes"] < demo["artifact_bytes"]
    assert demo["val_bpb_post_quant_mixed"] < demo["unigram_val_bpb"]
    for kind in ("chunked", "lora"):  # cpu-tiny scores two legal TTT kinds, each with its ledger report
        assert demo[f"ttt_{kind}_legal"] and demo[f"val_bpb_ttt_{kind}"] < demo["unigram_val_bpb"], kind
        assert result.score(f"ttt/{kind}").ledger["n_scored"] == result.score(f"ttt/{kind}").tokens
    for protocol in ("sliding", "chunked"):  # and mixes the normalised n-gram cache into both (issue 6)
        assert demo[f"ngram_{protocol}_legal"] and demo[f"val_bpb_ngram_{protocol}"] < demo["unigram_val_bpb"]
    assert demo["bytes_total"] == demo["artifact_bytes"] + demo["code_bytes"]
    assert any("val_bpb_post_quant" in line for line in lines)
    # the training the notebook launched wrote into the same run directory
    assert (run_dir / "train.log").is_file() and (run_dir / "console.log").is_file()
    # notebook 50 collected it; the smoke run scored a truncated val stream, so the record is refused (a val_bpb is
    # on the full split), reported, and the run kept (test_record_notebook / test_record_flow write real folders)
    assert demo["record_refused"].startswith("record refused (1 failed check(s), track non_record_16mb)")
    assert "full validation split: VAL_MAX_TOKENS=16384" in demo["record_refused"]
    assert "record_folder" not in demo and not (run_dir / "records").exists()
    assert any("records folder refused" in line for line in lines)


def test_golf_run_cli_data_notebook_and_bad_params(tmp_path, embedded_data):
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "golflib.cli", "run", str(REPO / "notebooks" / "00_data.ipynb"), "-p", "data_root",
           str(embedded_data["root"]), "-p", "prepare", "False", "-p", "figures_root", str(tmp_path / "figs"),
           "--runs-root", str(runs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = list(runs.iterdir())
    assert (run_dir / "00_data.ipynb").is_file()
    params = json.loads((run_dir / "00_data.params.json").read_text())
    assert params["prepare"] is False and params["run_dir"] == str(run_dir)
    bad = subprocess.run(cmd[:5] + ["-p", "vocab", "1024", "--runs-root", str(runs)], capture_output=True,
                         text=True, cwd=tmp_path)
    assert bad.returncode == 2 and "unknown parameter(s) ['vocab']" in bad.stderr
    wrong_type = subprocess.run(cmd[:5] + ["-p", "vocab_size", "'big'", "-p", "data_root", str(embedded_data["root"]),
                                           "--runs-root", str(runs)], capture_output=True, text=True, cwd=tmp_path)
    assert wrong_type.returncode != 0 and "vocab_size='big': expected int" in wrong_type.stderr + wrong_type.stdout


def test_ablation_notebook_smoke(tmp_path, embedded_data, monkeypatch):
    from golflib.workbook.notebook import run_notebook

    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "runs" / "abl"
    run_notebook(REPO / "notebooks" / "11_ablation.ipynb",
                 {"base": "cpu-tiny", "changes": [{"MLP_ACTIVATION": "leaky_relu_sq"}], "seeds": [1, 2],
                  "max_wallclock_seconds": 4.0, "smoke": True, "data_root": str(embedded_data["root"]),
                  "figures_root": str(tmp_path / "figs")}, run_dir=run_dir, log_output=False)
    rows = json.loads((run_dir / "ablation.json").read_text())
    assert [(r["variant"], r["seed"]) for r in rows] == [("base", 1), ("base", 2), ("MLP_ACTIVATION=leaky_relu_sq", 1),
                                                          ("MLP_ACTIVATION=leaky_relu_sq", 2)]
    cfg = json.loads((run_dir / "ablation" / "MLP_ACTIVATION=leaky_relu_sq_s2" / "config.json").read_text())
    assert cfg["config"]["model"]["mlp_activation"] == "leaky_relu_sq" and cfg["config"]["train"]["seed"] == 2
    assert (run_dir / "figures" / "ablation.png").stat().st_size > 5000
    # resumable: a second execution reuses every finished point (no new training)
    before = {p: p.stat().st_mtime for p in (run_dir / "ablation").glob("*/result.json")}
    run_notebook(REPO / "notebooks" / "11_ablation.ipynb",
                 {"base": "cpu-tiny", "changes": [{"MLP_ACTIVATION": "leaky_relu_sq"}], "seeds": [1, 2],
                  "max_wallclock_seconds": 4.0, "smoke": True, "data_root": str(embedded_data["root"]),
                  "figures_root": str(tmp_path / "figs"), "resume_from": str(run_dir)},
                 run_dir=tmp_path / "runs" / "abl2", log_output=False)
    assert json.loads((tmp_path / "runs" / "abl2" / "ablation.json").read_text()) == rows
    assert all(p.stat().st_mtime == t for p, t in before.items())


def test_ablation_summary_math():
    from golflib.workbook.ablation import summarize_ablation

    rows = [{"variant": "base", "val_bpb": 2.0}, {"variant": "base", "val_bpb": 2.2},
            {"variant": "X=1", "val_bpb": 1.9}, {"variant": "X=1", "val_bpb": 2.1}]
    s = {r["variant"]: r for r in summarize_ablation(rows)}
    assert s["base"]["mean"] == pytest.approx(2.1) and s["X=1"]["delta_vs_base"] == pytest.approx(-0.1)
    assert s["base"]["std"] == pytest.approx(0.1414213, rel=1e-5)
