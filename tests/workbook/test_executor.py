"""The executor seam (issue 18): local, submitit's local executor (parallel processes), and Slurm's submission in a
dry mode; the per-point sweep state; the runs index and `golf compare`."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3

import pytest

from golflib.errors import ConfigError, GolfError
from golflib.workbook.executor import ExecutorSettings, Task, execute, slurm_preview
from golflib.workbook.sweepstate import SweepState, load_state, status_text


def square_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def boom(x: int) -> int:
    raise RuntimeError(f"point {x} made to fail")


def test_settings_from_notebook_values():
    assert ExecutorSettings.from_value(None).kind == "local"
    assert ExecutorSettings.from_value("submitit-local").kind == "submitit-local"
    s = ExecutorSettings.from_value({"kind": "slurm", "gpus_per_node": 8, "setup": ["module load cuda"]})
    assert s.setup == ("module load cuda",) and s.nproc(1) == 8 and ExecutorSettings().nproc(3) == 3
    for bad, field in (({"kind": "pbs"}, "kind"), ({"max_parallel": 0}, "max_parallel"),
                       ({"nodes": 2}, "nodes"), ({"kind": "local", "dry_run": True}, "dry_run"),
                       ({"gpus": 8}, "unknown field")):
        with pytest.raises(ConfigError, match=field):
            ExecutorSettings.from_value(bad)


def test_local_executor_keeps_failures(tmp_path):
    seen = []
    tasks = [Task("a", square_pid, (3,)), Task("b", boom, (4,)), Task("c", square_pid, (5,))]
    out = execute(tasks, ExecutorSettings(), tmp_path, on_outcome=lambda t, o: seen.append((t.key, o.state)))
    assert [o.state for o in out] == ["done", "failed", "done"] and seen == [("a", "done"), ("b", "failed"),
                                                                              ("c", "done")]
    assert out[0].result == (9, os.getpid())  # in this process, one after another
    assert "point 4 made to fail" in out[1].error and out[1].job_id == "local-1"


def test_submitit_local_runs_tasks_in_parallel_processes(tmp_path, monkeypatch):
    # the jobs unpickle this module's functions: make it importable in them (golflib's own tasks always are)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]))
    tasks = [Task(f"p{i}", square_pid, (i,)) for i in range(3)] + [Task("bad", boom, (9,))]
    submitted = []
    out = execute(tasks, ExecutorSettings(kind="submitit-local", max_parallel=2), tmp_path / "jobs",
                  on_submit=lambda t, job, log: submitted.append((t.key, job, log)), echo=None)
    assert [o.state for o in out] == ["done"] * 3 + ["failed"]
    assert [o.result[0] for o in out[:3]] == [0, 1, 4]
    pids = {o.result[1] for o in out[:3]}
    assert os.getpid() not in pids and len(pids) == 3  # one process per task
    assert "point 9 made to fail" in out[3].error and out[3].job_id and os.path.isfile(out[3].log)
    assert [s[0] for s in submitted] == ["p0", "p1", "p2", "bad"]


def test_slurm_submission_for_an_8_gpu_job_dry(tmp_path):
    """What submitit would submit for one 8×H100 seed: resources, time limit, the srun line, the torchrun line."""
    s = ExecutorSettings(kind="slurm", gpus_per_node=8, cpus_per_task=64, mem_gb=512, partition="h100",
                         account="golf", time_min=25, setup=("source .venv/bin/activate",), dry_run=True)
    cmd = ["python", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=8", "train_gpt.py",
           "--run-dir", "runs/seeds/seed_1337"]
    text = slurm_preview(s, [Task("1337", square_pid, (1,), label="seed 1337", command=cmd)], tmp_path / "jobs")
    for line in ("#SBATCH --gpus-per-node=8", "#SBATCH --time=25", "#SBATCH --nodes=1", "#SBATCH --partition=h100",
                 "#SBATCH --account=golf", "#SBATCH --cpus-per-task=64", "#SBATCH --mem=512GB",
                 "#SBATCH --ntasks-per-node=1", "source .venv/bin/activate"):
        assert line in text, line
    srun = [ln for ln in text.splitlines() if ln.startswith("srun ")]
    assert len(srun) == 1 and "-m submitit.core._submit" in srun[0] and str(tmp_path / "jobs") in srun[0]
    assert ("# [seed 1337] python -m torch.distributed.run --standalone --nproc_per_node=8 train_gpt.py --run-dir "
            "runs/seeds/seed_1337") in text
    # three seeds: one job array, at most max_parallel at once
    three = slurm_preview(s, [Task(str(i), square_pid, (i,)) for i in range(3)], tmp_path / "jobs")
    assert "#SBATCH --array=0-2%2" in three
    # execute() in a dry run prints the same and submits nothing
    printed = []
    assert execute([Task("1337", square_pid, (1,), command=cmd)], s, tmp_path / "jobs", echo=printed.append) == []
    assert "#SBATCH --gpus-per-node=8" in printed[0] and not (tmp_path / "jobs").exists()


def test_sweep_state_resume_rules(tmp_path):
    st = SweepState(tmp_path, "ttt", executor={"kind": "local"})
    for k in ("a", "b", "c"):
        st.plan(k, f"point {k}")
    st.submitted("a", "job-1", "a.log")
    st.finished("a", "done", score=1.5, seconds=2.0)
    st.finished("b", "failed", job_id="job-2", log="b.log", error="Traceback\nRuntimeError: boom")
    again = SweepState(tmp_path, "ttt")
    assert again.todo(["a", "b", "c"]) == ["c"] and again.todo(["a", "b", "c"], retry_failed=True) == ["b", "c"]
    assert again.counts() == {"pending": 1, "submitted": 0, "done": 1, "failed": 1}
    text = status_text(tmp_path)
    assert "ttt job" in text and "1 pending, 1 done, 1 failed" in text
    assert "| point a | done" in text and "1.50000" in text and "RuntimeError: boom" in text
    with pytest.raises(GolfError, match="holds a 'ttt' job"):
        SweepState(tmp_path, "ablation")
    assert load_state(tmp_path).kind == "ttt"
    with pytest.raises(FileNotFoundError, match="no sweep state"):
        load_state(tmp_path / "nothing")


# ---- the TTT sweep through the seam (3 points in parallel processes == the sequential path) ------------------------
GRID = {"kind": ["chunked"], "lr": [0.003, 0.03], "epochs": [1], "chunk": [512]}  # + the no-TTT reference: 3 points


@pytest.mark.slow
def test_ttt_sweep_parallel_equals_sequential_and_resumes(ttt_run, tmp_path):
    from golflib.workbook.ttt_sweep import run_sweep

    seq = run_sweep(ttt_run, GRID, tmp_path / "seq" / "ttt_sweep.jsonl", val_max_tokens=2048, echo=None)
    par_path = tmp_path / "par" / "ttt_sweep.jsonl"
    par = run_sweep(ttt_run, GRID, par_path, val_max_tokens=2048, echo=None,
                    executor={"kind": "submitit-local", "max_parallel": 3})
    assert len(seq) == len(par) == 3 and all(r["state"] == "done" and not r["cached"] for r in seq + par)
    for a, b in zip(seq, par):
        assert a["point"] == b["point"] and a["val_bpb"] == b["val_bpb"] and a["val_loss"] == b["val_loss"]
        assert a["ledger"] == b["ledger"] and b["job_id"] and not b["job_id"].startswith("local")
    st = load_state(par_path.parent)
    assert st.counts()["done"] == 3 and len({p["job_id"] for p in st.points.values()}) == 3

    # a point made to fail (an optimizer the config refuses) is reported with its error and log, never dropped
    bad = {**GRID, "optimizer": ["sgd", "bogus"]}
    rows = run_sweep(ttt_run, bad, par_path, val_max_tokens=2048, echo=None,
                     executor={"kind": "submitit-local", "max_parallel": 3})
    by = {json.dumps(r["point"], sort_keys=True): r for r in rows}
    failed = [r for r in rows if r["state"] == "failed"]
    assert len(rows) == 5 and len(failed) == 2 and all(r["val_bpb"] is None for r in failed)
    assert all("TTT_OPTIMIZER='bogus': must be sgd or adamw" in r["verdict"] and os.path.isfile(r["log"])
               for r in failed)
    # the reference is the same point as before (cached); the sgd points name the optimizer, so they are new points,
    # with the numbers of the same settings above (sgd is the default)
    assert rows[0]["cached"] and rows[0]["val_bpb"] == par[0]["val_bpb"]
    sgd = by[json.dumps({"kind": "chunked", "lr": 0.003, "epochs": 1, "optimizer": "sgd", "chunk": 512},
                        sort_keys=True)]
    assert sgd["state"] == "done" and not sgd["cached"] and sgd["val_bpb"] == par[1]["val_bpb"]
    text = status_text(par_path.parent)
    assert "2 failed" in text and "TTT_OPTIMIZER" in text
    from golflib.cli import main as golf

    assert golf(["sweep", "status", str(par_path.parent)]) == 1  # exit 1: a point failed
    # resumed: nothing left to run (failed points wait for retry_failed); one new lr runs only its own points
    lines = par_path.read_text().splitlines()
    again = run_sweep(ttt_run, bad, par_path, val_max_tokens=2048, echo=None, executor="submitit-local")
    assert [r["cached"] for r in again] == [True] * 5 and par_path.read_text().splitlines() == lines
    more = run_sweep(ttt_run, {**bad, "lr": [0.003, 0.03, 0.01]}, par_path, val_max_tokens=2048, echo=None,
                     executor="submitit-local")
    ran = [r for r in more if not r["cached"]]
    assert [r["point"]["lr"] for r in ran] == [0.01, 0.01] and [r["state"] for r in ran] == ["done", "failed"]
    retried = run_sweep(ttt_run, bad, par_path, val_max_tokens=2048, echo=None, retry_failed=True)
    assert [r["state"] for r in retried if not r["cached"]] == ["failed", "failed"]  # ran again, failed again


# ---- golf compare and the runs index on two runs ---------------------------------------------------------------------
@pytest.mark.slow
def test_compare_and_runs_index(ttt_run, quant_run, tmp_path, capsys):
    from golflib.cli import main as golf
    from golflib.workbook.compare import compare_runs
    from golflib.workbook.resultfile import load_run_result
    from golflib.workbook.runindex import build_index, headline, query

    a, b = load_run_result(quant_run), load_run_result(ttt_run)
    c = compare_runs([quant_run, ttt_run])
    diff = dict(c.config_diff)
    assert diff["TTT_ENABLED"] == [False, True] and "DATA_PATH" not in diff
    std = next(s for s in c.scores if s["key"] == "quantized/standard")
    assert std["val_bpb"] == [a.score("quantized/standard").val_bpb, b.score("quantized/standard").val_bpb]
    assert std["delta_bpb"][1] == pytest.approx(std["val_bpb"][1] - std["val_bpb"][0], abs=1e-15)
    assert std["delta_nats"][1] == pytest.approx(b.score("quantized/standard").val_loss
                                                 - a.score("quantized/standard").val_loss, abs=1e-15)
    lora = next(s for s in c.scores if s["key"] == "ttt/lora")  # only the second run has it
    assert lora["val_bpb"][0] is None and lora["delta_bpb"] == [None, None]
    assert dict(c.bytes)["bytes_total"] == [a.bytes_total(), b.bytes_total()]
    assert golf(["compare", str(quant_run), str(ttt_run), "--figure", str(tmp_path / "fig")]) == 0
    out = capsys.readouterr().out
    assert f"{std['delta_bpb'][1]:+.5f}" in out and "| TTT_ENABLED" in out
    assert (tmp_path / "fig" / "compare.png").stat().st_size > 20_000

    runs = tmp_path / "runs"
    for src, name in ((quant_run, "r1"), (ttt_run, "seeds/seed_7")):
        shutil.copytree(src, runs / name, ignore=shutil.ignore_patterns("*.golf", "*.safetensors"))
    (runs / "broken").mkdir()
    shutil.copy(quant_run / "config.json", runs / "broken" / "config.json")
    (runs / "broken" / "train.log").write_text("step:1/2 train_loss:5.0\nrun_failed: RuntimeError: boom\n")
    db = build_index(runs)
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 3
    rows = {r["run_id"]: r for r in query(db, "SELECT * FROM runs")}
    assert rows["broken"]["state"] == "failed" and "boom" in rows["broken"]["error"]
    assert rows["seeds/seed_7"]["scored_key"] == headline(b.scores) == "ttt/phased"
    assert rows["seeds/seed_7"]["val_bpb"] == b.score("ttt/phased").val_bpb
    assert rows["r1"]["bytes_total"] == a.bytes_total() and rows["r1"]["steps"] == a.training["steps"]
    n_scores = query(db, "SELECT count(*) AS n FROM scores WHERE run_id = 'r1'")[0]["n"]
    assert n_scores == len(a.scores)
    ttt = query(db, "SELECT value FROM config WHERE run_id = 'seeds/seed_7' AND name = 'TTT_ENABLED'")
    assert ttt == [{"value": "true"}]


def test_golf_seeds_slurm_dry_run_prints_and_writes_nothing(tmp_path, capsys):
    from golflib.cli import main as golf

    out = tmp_path / "seeds"
    assert golf(["seeds", "--preset", "pr1855_arch", "--seeds", "1337,42,2025", "--executor", "slurm",
                 "--executor-opt", "gpus_per_node=8", "--executor-opt", "time_min=25", "--executor-opt",
                 "partition=h100", "--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for line in ("#SBATCH --array=0-2%2", "#SBATCH --gpus-per-node=8", "#SBATCH --time=25",
                 "#SBATCH --partition=h100", "#SBATCH --job-name=seeds-pr1855_arch"):
        assert line in text, line
    for seed in (1337, 42, 2025):
        assert (f"# [seed {seed}] " in text and
                f"-m torch.distributed.run --standalone --nproc_per_node=8 train_gpt.py --run-dir "
                f"{out.resolve()}/seed_{seed}" in text)
    assert not out.exists()


@pytest.mark.slow
def test_tensorboard_export_reads_back_the_runs_numbers(quant_run, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from golflib.workbook.resultfile import load_run_result
    from golflib.workbook.runs import load_metrics
    from golflib.workbook.tracking import export_tensorboard

    out = export_tensorboard(quant_run, tmp_path / "tb")
    acc = EventAccumulator(str(out))
    acc.Reload()
    train = [m for m in load_metrics(quant_run) if m.get("kind") == "train"]
    got = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    assert got == [(m["step"], pytest.approx(m["train_loss"], rel=1e-6)) for m in train]  # float32 in the events
    r = load_run_result(quant_run)
    (score,) = acc.Scalars("score/quantized/standard/val_bpb")
    assert score.value == pytest.approx(r.score("quantized/standard").val_bpb, rel=1e-6)
    assert score.step == r.training["steps"]
    assert acc.Scalars("bytes/bytes_total")[0].value == r.bytes_total()


@pytest.mark.slow
def test_golf_run_through_submitit_local(embedded_data, tmp_path, monkeypatch, capsys):
    """`golf run NOTEBOOK --executor submitit-local`: the notebook executes in a submitit job (another process) into
    the run directory, exactly where a local `golf run` writes; submitit's own files stay outside it."""
    import nbformat

    from conftest import REPO
    from golflib.cli import main as golf

    monkeypatch.chdir(tmp_path)
    assert golf(["run", str(REPO / "notebooks" / "00_data.ipynb"), "-p", "data_root", str(embedded_data["root"]),
                 "-p", "prepare", "False", "-p", "figures_root", str(tmp_path / "figs"), "--run-dir", "runs/nb",
                 "--executor", "submitit-local"]) == 0
    assert "executed notebook: " in capsys.readouterr().out
    nb = nbformat.read(str(tmp_path / "runs" / "nb" / "00_data.ipynb"), as_version=4)
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert (tmp_path / "runs" / "nb" / "figures" / "doc_token_lengths.png").is_file()
    assert sorted(p.name for p in (tmp_path / "runs" / "nb").iterdir()) == [
        "00_data.ipynb", "00_data.params.json", "figures"]
    assert list((tmp_path / "runs" / ".jobs" / "nb").glob("*_log.out"))


@pytest.mark.slow
def test_ablation_through_submitit_keeps_a_failed_point_and_retries_it(tmp_path, tiny_overrides):
    """An ablation in parallel processes where one variant cannot train (its val shards do not exist): the point is
    reported failed with its error, the base is kept; a rerun does not train it again, `retry_failed` does, in a
    fresh folder, keeping the failed attempt as `<point>.failed-1`."""
    from golflib.workbook.ablation import run_ablation, summarize_ablation

    over = {**tiny_overrides, "ITERATIONS": 4, "VAL_MAX_TOKENS": 2048, "EVAL_STRIDE": 0}
    bad = {"VAL_FILES": str(tmp_path / "nowhere" / "*_val_*.bin")}
    ex = {"kind": "submitit-local", "max_parallel": 2}
    rows = run_ablation(tmp_path / "abl", "cpu-tiny", [bad], [7], overrides=over, echo=None, executor=ex)
    assert [(r["variant"], r["state"]) for r in rows] == [("base", "done"), (f"VAL_FILES={bad['VAL_FILES']}",
                                                                             "failed")]
    assert rows[0]["val_bpb"] is not None and rows[1]["val_bpb"] is None and os.path.isfile(rows[1]["log"])
    assert "nowhere" in rows[1]["error"]
    summary = {s["variant"]: s for s in summarize_ablation(rows)}
    assert summary["base"]["n"] == 1 and summary[rows[1]["variant"]] == {
        "variant": rows[1]["variant"], "n": 0, "failed": 1, "mean": None, "std": 0.0, "delta_vs_base": None}
    st = load_state(tmp_path / "abl" / "ablation")
    assert st.counts()["done"] == 1 and st.counts()["failed"] == 1
    base_result = tmp_path / "abl" / "ablation" / "base_s7" / "result.json"
    t_base = base_result.stat().st_mtime
    again = run_ablation(tmp_path / "abl", "cpu-tiny", [bad], [7], overrides=over, echo=None, executor=ex)
    assert [r["state"] for r in again] == ["done", "failed"] and base_result.stat().st_mtime == t_base
    retried = run_ablation(tmp_path / "abl", "cpu-tiny", [bad], [7], overrides=over, echo=None, executor=ex,
                           retry_failed=True)
    assert [r["state"] for r in retried] == ["done", "failed"] and base_result.stat().st_mtime == t_base
    point = tmp_path / "abl" / "ablation" / f"{rows[1]['run'].split('/')[-1]}"
    assert point.with_name(point.name + ".failed-1").is_dir()
