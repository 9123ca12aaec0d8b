"""End to end: package vs bundled train_gpt.py (equivalence), `golf seeds`, `golf record`, the record's script run
from inside its folder, and planted compliance failures refused."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, TINY, run_golf_train, set_args
from golflib.workbook.resultfile import load_run_result
from golflib.record.compliance import ComplianceError, check_record, require_compliant
from golflib.record.minify import extract
from golflib.record.script import MAX_COMPRESSED_BYTES, make_script
from golflib.record.results import resolve_score_key, score_entry
from golflib.record.seeds import collect_seeds
from golflib.config import Config

pytestmark = pytest.mark.slow

SEEDS = (1337, 42)
# full validation split (a record needs one), no sliding window (it is the slow protocol on 2 CPU cores)
SEED_RUN = {**TINY, "VAL_MAX_TOKENS": 0, "EVAL_STRIDE": 0}


def _golf(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    full = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "golflib.cli", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=timeout)


def _data_only_folder(folder: Path, data_root: Path) -> None:
    """A folder whose ./data is the prepared dataset (the challenge layout) and a poisoned `golflib` on PYTHONPATH
    (so an import of golflib fails loudly)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").symlink_to(data_root, target_is_directory=True)


def _poison(tmp: Path) -> dict:
    pkg = tmp / "poison" / "golflib"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text('raise ImportError("the bundled train_gpt.py imported golflib")\n')
    return {"PYTHONPATH": str(tmp / "poison")}


@pytest.fixture(scope="module")
def seeds_dir(tmp_path_factory, embedded_data):
    """`golf seeds --preset cpu-tiny --seeds 1337,42` on the tiny config (each seed: torchrun + the bundle)."""
    out = tmp_path_factory.mktemp("seeds") / "tiny"
    overrides = {**SEED_RUN, "DATA_PATH": embedded_data["data_path"],
                 "TOKENIZER_PATH": embedded_data["tokenizer_path"]}
    proc = _golf(["seeds", "--preset", "cpu-tiny", "--seeds", ",".join(map(str, SEEDS)), "--out", str(out),
                  *set_args(overrides)], cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| 1337 |" in proc.stdout and "| 42 |" in proc.stdout
    return out


def test_package_and_bundle_are_equivalent(tmp_path, embedded_data):
    """The same tiny training through `python -m golflib.train` and through the compressed train_gpt.py run from a
    folder holding only the data (golflib not importable): identical scores and identical artifact bytes."""
    overrides = {**TINY, "DATA_PATH": embedded_data["data_path"], "TOKENIZER_PATH": embedded_data["tokenizer_path"]}
    pkg_run = tmp_path / "pkg"
    proc = run_golf_train(["--preset", "cpu-tiny", "--run-dir", str(pkg_run), *set_args(overrides)], cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cfg = Config.from_json_file(pkg_run / "config.json")
    script = make_script(cfg, form="compressed", codec="brotli")
    assert script.counted_bytes <= MAX_COMPRESSED_BYTES
    empty = tmp_path / "empty"
    _data_only_folder(empty, embedded_data["root"])
    (empty / "train_gpt.py").write_text(script.counted)
    proc = subprocess.run([sys.executable, "train_gpt.py", "--run-dir", "run"], cwd=empty, capture_output=True,
                          text=True, timeout=600, env={**os.environ, **_poison(tmp_path)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    a = load_run_result(pkg_run)
    b = load_run_result(empty / "run")  # the bundle's result.json follows the same schema
    for key in ("pre_quant", "quantized/standard", "mixed/standard", "mixed/sliding"):
        ea, eb = a.score(key), b.score(key)
        assert eb.val_bpb == pytest.approx(ea.val_bpb, abs=1e-12), key
        assert eb.val_loss == pytest.approx(ea.val_loss, abs=1e-12), key
        assert (eb.tokens, eb.bytes) == (ea.tokens, ea.bytes)
    for art in (a.artifacts["int8"].path, a.artifacts["mixed"].path):
        assert (empty / "run" / art).read_bytes() == (pkg_run / art).read_bytes(), art
    # the bundle counted itself: bytes_total is the real submission size
    assert b.code_bytes == (empty / "train_gpt.py").stat().st_size == script.counted_bytes
    assert b.bytes_total("int8") == b.artifacts["int8"].artifact_bytes + b.code_bytes
    assert a.code_bytes > 5 * b.code_bytes  # the package run counted ~50 raw module sources
    log = (empty / "run" / "train.log").read_text()
    # a short header names the file; its text, verbatim, closes the log, after every metric line
    assert log.startswith("=" * 100 + "\ncommand:") and "code:train_gpt.py: this single bundled file" in log
    assert log.rstrip("\n").endswith(script.counted.rstrip("\n"))


def test_seeds_in_parallel_processes_equal_the_sequential_seeds(seeds_dir, tmp_path, embedded_data):
    """Issue 18: the same two seeds through submitit's local executor (two processes at once, each a torchrun of the
    bundle) give the sequential `golf seeds` numbers bit for bit, with every seed's job id in sweep.json."""
    from golflib.errors import RunDirError
    from golflib.record.seeds import run_seeds
    from golflib.workbook.sweepstate import load_state

    overrides = {**SEED_RUN, "DATA_PATH": embedded_data["data_path"],
                 "TOKENIZER_PATH": embedded_data["tokenizer_path"]}
    par = run_seeds("cpu-tiny", SEEDS, overrides=overrides, out_dir=tmp_path / "par", echo=None,
                    executor={"kind": "submitit-local", "max_parallel": 2})
    seq = collect_seeds(seeds_dir)
    assert (tmp_path / "par" / "train_gpt.py").read_bytes() == (seeds_dir / "train_gpt.py").read_bytes()
    assert par.seeds == seq.seeds == list(SEEDS) and not par.failed
    for a, b in zip(seq.runs, par.runs):
        assert set(a.result.scores) == set(b.result.scores)
        for key, ea in a.result.scores.items():
            assert b.result.scores[key].val_bpb == ea.val_bpb and b.result.scores[key].val_loss == ea.val_loss, key
        assert b.result.bytes_total() == a.result.bytes_total()
    st = load_state(tmp_path / "par")
    assert st.kind == "seeds" and st.counts()["done"] == 2
    assert all(p["job_id"] and not p["job_id"].startswith("local") for p in st.points.values())
    plan = json.loads((tmp_path / "par" / "seeds.json").read_text())
    assert plan["executor"]["kind"] == "submitit-local" and {s["state"] for s in plan["status"].values()} == {"done"}
    # resumed after seed 42 lost its result (an interrupted run): only seed 42 trains again, in a fresh folder; the
    # interrupted one is kept beside it
    (tmp_path / "par" / f"seed_{SEEDS[1]}" / "result.json").unlink()
    with pytest.raises(RunDirError, match="resume it"):
        run_seeds("cpu-tiny", SEEDS, overrides=overrides, out_dir=tmp_path / "par", echo=None)
    lines = []
    again = run_seeds("cpu-tiny", SEEDS, overrides=overrides, out_dir=tmp_path / "par", echo=lines.append,
                      resume=True)
    assert [ln for ln in lines if ln.startswith("[seeds] seed ")] == [
        ln for ln in lines if ln.startswith(f"[seeds] seed {SEEDS[1]}: ")]  # seed 1337 was not run again
    assert (tmp_path / "par" / f"seed_{SEEDS[1]}.failed-1" / "train.log").is_file()
    assert [r.result.score("quantized/standard").val_bpb for r in again.runs] == [
        r.result.score("quantized/standard").val_bpb for r in seq.runs]


def test_seeds_runner_keeps_every_seed(seeds_dir):
    plan = json.loads((seeds_dir / "seeds.json").read_text())
    assert plan["seeds"] == list(SEEDS) and plan["preset"] == "cpu-tiny"
    assert {s: v["state"] for s, v in plan["status"].items()} == {"1337": "done", "42": "done"}
    assert plan["status"]["42"]["env"]["SEED"] == "42" and "train_gpt.py" in plan["status"]["42"]["command"]
    script = seeds_dir / "train_gpt.py"
    assert extract(script.read_text()) and (seeds_dir / "train_gpt_readable.py").is_file()
    s = collect_seeds(seeds_dir)
    assert s.seeds == list(SEEDS) and not s.failed
    rows = plan["table"]["rows"]
    assert [r["seed"] for r in rows] == list(SEEDS)
    for run, row in zip(s.runs, rows):
        res = run.result
        assert res.code_bytes == script.stat().st_size  # each seed counted the script that ran it
        assert res.bytes_total("int8") == res.artifacts["int8"].artifact_bytes + script.stat().st_size
        # the row is the scored artifact (cpu-tiny exports the records' mixed format) under its standard round trip
        assert res.scored_artifact == "mixed" and resolve_score_key(res) == "mixed/standard"
        mixed = res.artifacts["mixed"]
        assert row["bytes_total"] == mixed.artifact_bytes + script.stat().st_size == mixed.bytes_total
        assert row["val_bpb"] == res.score("mixed/standard").val_bpb and row["eval_mode"] == "standard"
        assert row["quantized_bpb"] == res.score("quantized/standard").val_bpb
        assert res.val["val_max_tokens"] == 0 and run.meta["bundled"] is True
    assert rows[0]["val_bpb"] != rows[1]["val_bpb"]  # different seeds, different runs
    summary = plan["table"]["summary"]
    assert summary["val_bpb"] == pytest.approx(sum(r["val_bpb"] for r in rows) / 2)
    assert "| 1337 |" in (seeds_dir / "seeds_table.md").read_text()


def test_record_folder_runs_from_inside(seeds_dir, tmp_path, embedded_data):
    records = tmp_path / "records"
    proc = _golf(["record", str(seeds_dir), "--name", "TinySmoke", "--records-root", str(records),
                  "--base-nats", "5.60,5.62,5.61", "--base-pr", "1", "--base-preset", "cpu-tiny",
                  "--date", "2026-01-02", "--author", "golflib tests"], cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    folder = records / "track_10min_16mb" / "2026-01-02_TinySmoke"
    for f in ("README.md", "submission.json", "train_gpt.py", "train_gpt_readable.py", "requirements.txt",
              "train_seed1337.log", "train_seed42.log", "figures/seed_curves.png", "figures/seed_scores.png",
              "figures/size_budget.png"):
        assert (folder / f).is_file(), f
    assert (folder / "train_gpt.py").read_bytes() == (seeds_dir / "train_gpt.py").read_bytes()
    sub = json.loads((folder / "submission.json").read_text())
    for k in ("author", "github_id", "name", "blurb", "date", "val_loss", "val_bpb", "bytes_total", "bytes_code",
              "track", "seeds", "seed_results", "val_bpb_std", "hardware", "pytorch_version", "compliance",
              "base_pr"):
        assert k in sub, k
    per = [sub["seed_results"][str(s)] for s in SEEDS]
    assert sub["val_bpb"] == pytest.approx(sum(p["val_bpb"] for p in per) / 2)
    assert sub["bytes_total"] == max(p["bytes_total"] for p in per)
    assert sub["bytes_code"] == (folder / "train_gpt.py").stat().st_size and sub["base_pr"] == 1
    assert sub["compliance"]["artifact_under_16mb"] and sub["compliance"]["three_seeds"] is False
    assert sub["p_value"] < 0.01 and sub["delta_vs_base_nats"] < -0.005 and sub["code_form"]["form"] == "compressed"
    readme = (folder / "README.md").read_text()
    for section in ("## Results", "## Versus the base record", "## Changes vs the base", "## Run command",
                    "## Requirements", "## Code size", "## Compliance", "Welch"):
        assert section in readme, section
    assert "SEED=42 torchrun --standalone --nproc_per_node=1 train_gpt.py" in readme
    req = (folder / "requirements.txt").read_text()
    # seeds ran on CPU: torch is pinned to the records' CUDA stack, said so, with the FA3 wheel as records list it
    assert "\ntorch==2.9.1+cu128\n" in req and "the seeds of this folder ran torch" in req
    assert "flash_attn_3 --find-links" in req
    # the compliance keys of accepted records (2026-04-09_SP8192_3LayerRecur_ParResid_QK525_LegalTTT), from the runs
    accepted = {"train_under_600s", "artifact_under_16mb", "eval_under_600s", "no_slot", "no_pre_quant_ttt",
                "no_etlb", "no_ngram_cache", "score_first_ttt", "three_seeds"}
    assert accepted <= set(sub["compliance"]) and sub["compliance"]["no_ngram_cache"] is True
    assert sub["compliance"]["score_first_ttt"] is None  # the scored metric is no TTT score
    # no path of this machine in the folder's text files; a missing github_id is warned about loudly
    for f in ("README.md", "submission.json", "requirements.txt"):
        text = (folder / f).read_text()
        assert not re.search(r"(?<![\w.])/(tmp|home|root|work|Users)/", text), (f, re.findall(r"/tmp/\S+", text)[:3])
    assert "WARNING" in proc.stderr and "has no author / github_id" in proc.stderr
    assert "| `NUM_LAYERS` | 4 | 2 |" in readme  # changes vs the base preset
    # each log was written by the folder's own train_gpt.py (issue 17): its header names that file, its bytes and
    # hash; its code and total lines agree with submission.json; the source comes after the metric lines
    import hashlib

    from golflib.runlog import metric_stream

    script = (folder / "train_gpt.py").read_bytes()
    for seed in SEEDS:
        log = (folder / f"train_seed{seed}.log").read_text()
        head = log.split("Hyperparameters:")[0]
        assert (f"code:train_gpt.py: this single bundled file bytes:{sub['bytes_code']} "
                f"sha256:{hashlib.sha256(script).hexdigest()}") in head
        assert f"Code size: {sub['bytes_code']} bytes" in log
        assert re.search(rf"^Total submission size \S+: {sub['seed_results'][str(seed)]['bytes_total']} bytes", log,
                         re.M)
        stream = metric_stream(log)
        assert "b85decode" not in stream and log.rstrip("\n").endswith(script.decode().rstrip("\n"))
        assert not re.search(r"^\S+ .*\b\w+=\S", stream.replace("tokenizer_kind=", "").replace(
            "tokenizer_path=", ""), re.M), "metric lines are key:value (the official val_bpb:enabled line aside)"
    # the folder's train_gpt.py runs from inside the folder (data at ./data, golflib not importable) and
    # reproduces seed 1337
    (folder / "data").symlink_to(embedded_data["root"], target_is_directory=True)
    proc = subprocess.run([sys.executable, "train_gpt.py", "--run-dir", "rerun"], cwd=folder, capture_output=True,
                          text=True, timeout=600, env={**os.environ, **_poison(tmp_path)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rerun = load_run_result(folder / "rerun")
    entry, art = score_entry(rerun, resolve_score_key(rerun))
    assert entry["val_bpb"] == pytest.approx(per[0]["val_bpb"], abs=5e-9)  # submission.json keeps 8 decimals
    assert art["artifact_bytes"] + sub["bytes_code"] == per[0]["bytes_total"]
    # never overwritten
    proc = _golf(["record", str(seeds_dir), "--name", "TinySmoke", "--records-root", str(records),
                  "--date", "2026-01-02"], cwd=REPO)
    assert proc.returncode == 2 and "never overwritten" in proc.stderr


def _copy_seeds(seeds_dir: Path, dst: Path) -> Path:
    shutil.copytree(seeds_dir, dst, ignore=shutil.ignore_patterns("*.safetensors"))
    return dst


def _edit_json(path: Path, fn) -> None:
    obj = json.loads(path.read_text())
    fn(obj)
    path.write_text(json.dumps(obj))


def test_planted_over_budget_run_is_refused(seeds_dir, tmp_path):
    planted = _copy_seeds(seeds_dir, tmp_path / "over")
    code = (planted / "train_gpt.py").stat().st_size
    run = planted / "seed_42"
    res = load_run_result(run)
    key = res.scored_artifact  # the artifact the seeds scored
    art = run / res.artifacts[key].path
    with open(art, "r+b") as fh:  # a real artifact file of the planted size
        fh.truncate(16_000_001 - code)
    _edit_json(run / "result.json", lambda r: r["artifacts"][key].update(
        artifact_bytes=16_000_001 - code, bytes_total=16_000_001 - code + r["code"]["bytes"], under_limit=False))
    records = tmp_path / "records"
    proc = _golf(["record", str(planted), "--name", "Over", "--records-root", str(records)], cwd=REPO)
    assert proc.returncode == 2
    assert "record refused" in proc.stderr and "seed 42: bytes_total < 16,000,000" in proc.stderr
    assert f"+ code {code:,} = 16,000,001 bytes" in proc.stderr
    assert not records.exists()  # nothing written


def test_planted_mib_target_is_refused(seeds_dir, tmp_path):
    planted = _copy_seeds(seeds_dir, tmp_path / "mib")
    for s in SEEDS:  # TARGET_MB=15.9 as 15.9 * 1024 * 1024 (#1019)
        _edit_json(planted / f"seed_{s}" / "config.json",
                   lambda c: c["config"]["quant"].update(prune_target_bytes=int(15.9 * 1024 * 1024)))
    proc = _golf(["record", str(planted), "--name", "Mib", "--records-root", str(tmp_path / "r")], cwd=REPO)
    assert proc.returncode == 2
    assert "PRUNE_TARGET_BYTES=16,672,358 is a MiB-style target (15.90 MiB" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_other_planted_failures(seeds_dir, tmp_path):
    planted = _copy_seeds(seeds_dir, tmp_path / "misc")
    s = collect_seeds(planted)
    code = (planted / "train_gpt.py").stat().st_size
    require_compliant(check_record(s.runs, "quantized/standard", code))  # the real seeds pass
    r0, r1 = s.runs
    r0.log += "final_sneaky_exact val_loss:1.00000000 val_bpb:0.50000000\n"
    r1.result.val["val_max_tokens"] = 8192
    r1.result.score("quantized/standard").ledger["legal"] = False
    r1.config_json["config"]["model"]["num_layers"] = 3
    rep = check_record(s.runs, "quantized/standard", code, failed=[{"seed": 7, "run_dir": "x", "error": "boom"}])
    failed = {(c.seed, c.name) for c in rep.failures()}
    assert (1337, "every metric line carries eval_mode:") in failed
    assert (42, "full validation split") in failed and (42, "legality reports clean (C1-C4)") in failed
    assert (None, "one configuration (only SEED differs)") in failed
    assert (None, "every seed finished and is kept") in failed
    assert (42, "log counted the record's train_gpt.py") not in failed
    assert (None, "three or more seeds") not in failed  # reported, not required
    with pytest.raises(ComplianceError, match="seed 7 failed/missing"):
        require_compliant(rep)
    # a different script than the one the seeds ran
    rep = check_record(s.runs, "quantized/standard", code + 1)
    assert (1337, "log counted the record's train_gpt.py") in {(c.seed, c.name) for c in rep.failures()}
    # time budgets: required on the record track, reported only on the non-record track
    r0.result.timings.train_time_ms = 700_000.0
    assert (1337, "train <= 600 s (incl. train-data calibration)") in {
        (c.seed, c.name) for c in check_record([r0], "quantized/standard", code).failures()}
    assert not any(c.name.startswith("train <=") for c in
                   check_record([r0], "quantized/standard", code, track="non_record_16mb").failures())
