"""`golf quant requant|budget|codecs`, `golf bench quant` and `golf eval` on a tiny trained run with both artifacts."""

import json
import math

import pytest

from golflib.cli import main
from golflib.quant.artifact import read_artifact
from golflib.workbook.bench import run_bench
from golflib.workbook.runs import find_artifact, load_result
from golflib.workbook.scoring import score_artifact
from golflib.workbook.training import summarize

pytestmark = pytest.mark.slow


def test_training_wrote_both_artifacts_side_by_side(quant_run):
    res = load_result(quant_run)
    mixed = res.artifacts["mixed"]
    assert mixed.path == "final_model.int6e8_entropy.golf" and mixed.codec == "entropy"
    assert mixed.artifact_bytes == (quant_run / mixed.path).stat().st_size
    assert mixed.artifact_bytes < 0.6 * res.artifacts["int8"].artifact_bytes  # int6+entropy vs int8+zlib
    assert mixed.bytes_total == mixed.artifact_bytes + res.code_bytes
    assert abs(res.score("mixed/standard").val_bpb - res.score("quantized/standard").val_bpb) < 0.05
    assert sum(mixed.details["classes"].values()) + mixed.details["header_bytes"] == mixed.artifact_bytes
    s = summarize(quant_run)
    assert s["mixed_scheme"] == "int6e8+entropy" and s["mixed_artifact_bytes"] == mixed.artifact_bytes
    assert s["val_bpb_post_quant_mixed"] == res.score("mixed/standard").val_bpb
    log = (quant_run / "train.log").read_text()
    assert "final_int6e8_entropy_roundtrip_exact val_loss:" in log
    meta = read_artifact(quant_run / mixed.path).meta
    assert meta["model"]["model_dim"] == 64 and meta["quant"]["gptq_enabled"] is True
    assert {e["method"] for e in meta["tensors"].values() if e["kind"] == "per_row"} == {"gptq"}


def test_golf_eval_scores_either_artifact(quant_run):
    res = load_result(quant_run)
    assert find_artifact(quant_run).name == res.scored.path  # the one its protocols scored
    out = score_artifact(quant_run / res.artifacts["mixed"].path, stride=0)
    assert out["standard"]["val_bpb"] == pytest.approx(res.score("mixed/standard").val_bpb, abs=1e-9)


def test_requant_writes_new_artifacts_and_scores_them(quant_run, capsys):
    args = ["quant", "requant", str(quant_run), "--set", "MATRIX_BITS=4", "--set", "MLP_CLIP_SIGMAS=8",
            "--calibration", "ar", "--val-max-tokens", "2048"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["artifact"].endswith("requant.int4e8_entropy.golf") and first["calibration"]["source"] == "ar"
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["artifact"].endswith("requant.int4e8_entropy-2.golf")  # never overwrites
    assert second["artifact_bytes"] == first["artifact_bytes"]  # AR calibration is seeded
    assert math.isfinite(first["val_bpb"]) and first["val_max_tokens"] == 2048
    e = read_artifact(first["artifact"]).meta["tensors"]["blocks.0.mlp.fc.weight"]
    assert (e["bits"], e["clip"]) == (4, "sdclip:8")
    mixed6 = load_result(quant_run).artifacts["mixed"].artifact_bytes
    assert first["artifact_bytes"] < mixed6
    assert main(["quant", "requant", str(quant_run), "--scheme", "int8", "--set", "ARTIFACT_CODEC=zstd",
                 "--val-max-tokens", "2048"]) == 0
    int8 = json.loads(capsys.readouterr().out)
    assert int8["codec"] == "zstd" and int8["scheme"] == "int8_clean_per_row_v1"
    assert main(["quant", "requant", str(quant_run), "--set", "MATRIX_BITS=12"]) == 2
    assert "MATRIX_BITS=12" in capsys.readouterr().err


def test_budget_cli_exit_codes_and_decimal_limits(quant_run, capsys):
    assert main(["quant", "budget", str(quant_run)]) == 0
    text = capsys.readouterr().out
    assert "vs limit 16,000,000: UNDER" in text and "final_model.int6e8_entropy.golf" in text
    assert main(["quant", "budget", str(quant_run), "--limit", "0.25MB", "--json"]) == 1  # 250,000 bytes
    reps = json.loads(capsys.readouterr().out)
    assert all(r["limit"] == 250_000 for r in reps) and not all(r["under_limit"] for r in reps)
    mixed = next(r for r in reps if r["codec"] == "entropy")
    assert mixed["exact"] and mixed["code_bytes"] == load_result(quant_run).code_bytes
    assert main(["quant", "budget", str(quant_run), "--limit", "15.9MiB"]) == 2
    assert "binary units" in capsys.readouterr().err


def test_codecs_cli_and_bench_quant(quant_run, tmp_path, capsys):
    assert main(["quant", "codecs", str(quant_run)]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["artifact"].endswith("int6e8_entropy.golf")
    allc = rep["classes"]["all"]
    assert allc["entropy"] < allc["one_per_byte"]["zstd"] and allc["entropy"] < allc["one_per_byte"]["brotli"]
    out = run_bench("quant", run_dir=str(quant_run), out=str(tmp_path / "b.json"), calib_batches=2)
    saved = json.loads((tmp_path / "b.json").read_text())
    for key in ("matrices_rtn", "matrices_gptq"):
        m = saved[key]
        assert m["ratio_to_zstd22"] == round(m["entropy"] / m["one_per_byte"]["zstd"], 4)
        assert m["ratio_to_order0_bound"] == round(m["entropy"] / m["order0"]["total"], 4)
        assert m["entropy"] <= 1.01 * m["order0"]["total"]
        assert m["symbols"] == 2 * (64 * 64 * 2 + 32 * 64 * 2 + 128 * 64 * 2)  # 2 layers of block matrices
    assert out["artifact_bytes_by_codec"]["entropy"] < out["artifact_bytes_by_codec"]["zstd"]
    same = saved["same_symbols"]
    for b in ("int6", "int7", "int8"):
        t, cls = same[b]["total"], same[b]["classes"]
        assert set(cls) == {"embedding", "attention", "mlp"}
        assert t["symbols"] == sum(c["symbols"] for c in cls.values()) == 2 * (64 * 64 * 2 + 32 * 64 * 2
                                                                              + 128 * 64 * 2) + 1024 * 64
        assert t["entropy"] == sum(c["entropy"] for c in cls.values())
        assert t["entropy_over_zstd"] == round(t["entropy"] / t["zstd"], 4)
    # wider codes cost more bytes under every codec
    assert same["int6"]["total"]["entropy"] < same["int7"]["total"]["entropy"] < same["int8"]["total"]["entropy"]
    dec = same["artifact_decode"]
    assert dec["threads"] == 1 and dec["meets_goal"] == (dec["seconds"] < 30.0)
    assert out["run_artifacts"]["mixed"]["artifact_bytes"] == load_result(quant_run).artifacts["mixed"].artifact_bytes
