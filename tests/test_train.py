"""End-to-end training on the embedded corpus (tiny shapes), run directories and failure handling."""

import json
import re

import pytest

from conftest import REPO, run_golf_train, set_args
from golflib.data.loader import load_validation_tokens
from golflib.data.luts import build_sentencepiece_luts
from golflib.data.shards import list_shards, load_shard
from golflib.eval.bpb import eval_standard, unigram_bpb
from golflib.quant.export import load_artifact_model
from golflib.runlog import create_run_dir
from golflib.workbook.runs import load_metrics, load_result

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, embedded_data):
    """One tiny training run shared by the tests of this module."""
    from conftest import TINY

    overrides = {**TINY, "DATA_PATH": embedded_data["data_path"], "TOKENIZER_PATH": embedded_data["tokenizer_path"],
                 "ITERATIONS": 200, "WARMDOWN_ITERS": 60, "VAL_LOSS_EVERY": 100, "TRAIN_BATCH_TOKENS": 2048,
                 "VAL_MAX_TOKENS": 0, "WARMUP_STEPS": 3}
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    proc = run_golf_train(["--preset", "cpu-tiny", "--run-dir", str(run_dir), *set_args(overrides)], cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run_dir, embedded_data


def test_tiny_training_beats_unigram(trained_run):
    run_dir, data = trained_run
    result = load_result(run_dir)
    cfg = json.loads((run_dir / "config.json").read_text())["config"]
    val = load_validation_tokens(str(data["data_path"] / "*_val_*.bin"), cfg["train"]["train_seq_len"], 1024)
    luts = build_sentencepiece_luts(data["tokenizer_path"], 1024)
    uni = unigram_bpb(load_shard(list_shards(str(data["data_path"] / "*_train_*.bin"))[0]), val, luts, 1024)
    post = result.score("quantized/standard").val_bpb
    assert 3.0 < uni < 3.8  # DESIGN.md: unigram val ≈ 3.37 bpb on this corpus
    assert post < uni - 0.5, (post, uni)
    assert result.training["steps"] == 200 and result.training["tokens_trained"] == 200 * 2048
    assert abs(result.score("pre_quant").val_bpb - post) < 0.05  # int8 costs little


def test_run_directory_contents_and_log_lines(trained_run):
    run_dir, _ = trained_run
    for name in ("config.json", "train.log", "metrics.jsonl", "result.json", "final_model.int8_zlib.golf",
                 "final_model.safetensors"):
        assert (run_dir / name).is_file(), name
    log = (run_dir / "train.log").read_text()
    assert log.startswith("=" * 100 + "\ncommand:")  # a short header first; the source at the end
    assert "final_int8_zlib_roundtrip_exact val_loss:" in log and "eval_mode:standard" in log
    # cpu-tiny exports the records' format too, and scores it: the sliding window runs on the int6 artifact
    assert "final_int6e8_entropy_sliding_window_exact" in log and "eval_mode:sliding" in log
    # one formatter, one field order for every score line (golflib.eval.scorelog)
    exact = [ln for ln in log.splitlines() if re.match(r"[a-z]\S*_exact val_loss:", ln)]  # not the code above
    assert len(exact) >= 3 and all(re.fullmatch(r"\S+_exact val_loss:\d+\.\d{8} val_bpb:\d+\.\d{8}( \w+:\S+)* "
                                                 r"eval_time:\d+ms eval_mode:\S+", ln) for ln in exact), exact
    assert "_sliding_window_exact val_loss:" in log and " stride:32 eval_seq_len:256 eval_time:" in log
    assert "warmup_step:3/3" in log
    res = load_result(run_dir)
    i8 = res.artifacts["int8"]
    assert res.bytes_total("int8") == i8.artifact_bytes + res.code_bytes == i8.bytes_total
    assert i8.artifact_bytes == (run_dir / "final_model.int8_zlib.golf").stat().st_size
    assert res.bytes_total() == res.artifacts["mixed"].artifact_bytes + res.code_bytes  # cpu-tiny ships the mixed
    assert "result:result.json schema:golflib.run_result/2 scores:pre_quant," in log
    events = load_metrics(run_dir)
    assert [e["step"] for e in events if e["kind"] == "val"] == [0, 100, 200]
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["meta"]["preset"] == "cpu-tiny" and cfg["config"]["train"]["iterations"] == 200


def test_bpb_from_disk_equals_in_memory(trained_run):
    """The logged round-trip score is the score of the artifact's bytes on disk."""
    run_dir, data = trained_run
    res = load_result(run_dir)
    model = load_artifact_model(run_dir / "final_model.int8_zlib.golf")
    cfg = json.loads((run_dir / "config.json").read_text())["config"]
    val = load_validation_tokens(str(data["data_path"] / "*_val_*.bin"), cfg["train"]["train_seq_len"], 1024)
    luts = build_sentencepiece_luts(data["tokenizer_path"], 1024)
    again = eval_standard(model, val, luts, seq_len=cfg["train"]["train_seq_len"], batch_tokens=8192)
    assert again.val_bpb == pytest.approx(res.score("quantized/standard").val_bpb, abs=1e-6)
    assert again.tokens == res.score("quantized/standard").tokens


def test_run_dir_is_never_overwritten(trained_run, tiny_overrides):
    run_dir, _ = trained_run
    before = (run_dir / "train.log").read_text()
    proc = run_golf_train(["--preset", "cpu-tiny", "--run-dir", str(run_dir), *set_args(tiny_overrides)], cwd=REPO)
    assert proc.returncode != 0 and "never overwritten" in proc.stderr
    assert (run_dir / "train.log").read_text() == before
    with pytest.raises(FileExistsError):
        create_run_dir(run_dir.parent, run_id=run_dir.name)


def test_failed_run_leaves_its_log(tmp_path, tiny_overrides):
    bad = {**tiny_overrides, "TOKENIZER_PATH": str(tmp_path / "missing.model")}
    run_dir = tmp_path / "failed"
    proc = run_golf_train(["--preset", "cpu-tiny", "--run-dir", str(run_dir), *set_args(bad)], cwd=REPO)
    assert proc.returncode != 0
    log = (run_dir / "train.log").read_text()
    assert "run_failed: FileNotFoundError: tokenizer model not found" in log
    assert (run_dir / "config.json").is_file()


def test_unknown_env_var_fails_before_training(tmp_path, tiny_overrides):
    proc = run_golf_train(["--preset", "cpu-tiny", "--run-dir", str(tmp_path / "r"), *set_args(tiny_overrides)],
                          cwd=REPO, env={"MATRIX_LRR": "0.1"})
    assert proc.returncode != 0 and "MATRIX_LRR (did you mean MATRIX_LR" in proc.stderr
