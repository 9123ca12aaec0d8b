"""Training with NGRAM_ENABLED (on the shared TTT run): result.json carries the mixer's score for the model alone
and after two TTT kinds, each with a legal ledger that saw the cache's updates and C2 checks, the log has the lines,
and the demo summary shows them."""

import re

import pytest

from golflib.workbook.runs import load_result
from golflib.workbook.training import score_table, summarize

pytestmark = pytest.mark.slow


def test_result_json_carries_the_ngram_protocols(ttt_run):
    res = load_result(ttt_run)
    ng = {k[6:]: e.to_dict() for k, e in res.scores.items() if k.startswith("ngram/")}
    assert set(ng) == {"sliding", "chunked", "lora"}
    slide = res.score("mixed/sliding").to_dict()  # the mixed artifact's (cpu-tiny's scored artifact)
    n = slide["tokens"]
    refs = {"sliding": slide, "chunked": res.score("ttt/chunked").to_dict(), "lora": res.score("ttt/lora").to_dict()}
    for protocol, mode in (("sliding", "sliding+ngram"), ("chunked", "ttt_chunked+ngram"), ("lora", "ttt_lora+ngram")):
        e = ng[protocol]
        rep = e["ledger"]
        assert e["mode"] == mode and rep["legal"] and rep["n_scored"] == rep["n_targets"] == e["tokens"] == n
        assert rep["stream_order"] == (protocol != "lora") and 2 in rep["conditions_checked"]
        mixer = e["details"]["ngram"]
        # the ledger's C2 rows are the mixer's (the distribution scored), each tied to its NLL — not the model's own
        # rows, which TTT kinds check only when no mixer is on (issue 15)
        assert mixer["positions"] == n and 0 < mixer["c2_rows"] == rep["c2_rows_checked"] == rep["c2_rows_tied"]
        assert mixer["c2_max_abs_sum_error"] < 1e-5 and mixer["settings"]["tilt_beta"] == 2.0
        # every mixer block is an update: at least n / 64 of them, plus the TTT steps
        assert rep["n_updates"] >= n // 64
        ref = res.references[f"ngram/{protocol}"]
        assert ref["mode"] == refs[protocol]["mode"]
        assert ref["delta_bpb"] == pytest.approx(e["val_bpb"] - refs[protocol]["val_bpb"])
        assert e["bytes"] == refs[protocol]["bytes"]
    assert res.extras["ngram_seconds"] == pytest.approx(sum(ng[k]["seconds"] for k in ("sliding", "chunked", "lora")))
    log = (ttt_run / "train.log").read_text()
    for label, mode in (("ngram_sliding", "sliding+ngram"), ("ngram_ttt", "ttt_chunked+ngram"),
                        ("ngram_ttt_lora", "ttt_lora+ngram")):
        m = re.search(rf"^{label}_exact val_loss:(\d+\.\d{{8}}) val_bpb:(\d+\.\d{{8}}) eval_time:\d+ms "
                      rf"eval_mode:{re.escape(mode)}$", log, re.M)
        assert m, label
        schedule = ng["sliding"]["details"]["ngram"]["settings"]["schedule"]
        assert f"{label}_ledger legal:1" in log and f"{label}_mixer schedule:{schedule} " in log
    s = summarize(ttt_run)
    assert s["ngram_sliding_legal"] and s["val_bpb_ngram_chunked"] == ng["chunked"]["val_bpb"]
    assert "int6e8+entropy sliding + n-gram mix" in score_table(s)  # the scored (mixed) artifact


def test_bench_ngram_on_a_run(ttt_run):
    from golflib.workbook.bench_ngram import bench_ngram

    out = bench_ngram(run_dir=str(ttt_run), kinds=("chunked",), val_max_tokens=1024, n_tokens=512, vocab_sizes=(64,))
    run = out["run"]
    assert run["slice"] and set(run["protocols"]) == {"sliding", "chunked"}
    for p in run["protocols"].values():
        assert p["legal"] and p["delta_bpb"] == pytest.approx(p["val_bpb_mixed"] - p["val_bpb_model"])
        assert p["end_to_end_tokens_per_second"] > 0 and p["mixer_tokens_per_second"] > 0
    assert run["hashed_940"]["c2_violations"] > 0 and run["golflib_mass"]["c2_violations"] == 0


def test_record_checks_cover_ngram_scores(ttt_run):
    """An n-gram protocol can be a record's score (``ngram/<protocol>``), and its legality report is checked with
    every other protocol's, claimed or not: a planted violation in the n-gram entry fails the legality check."""
    import copy

    from golflib.record.compliance import check_seed
    from golflib.record.results import load_seed_run, protocol_entries, resolve_score_key, seed_row

    run = load_seed_run(ttt_run)
    assert resolve_score_key(run.result, "ngram/chunked") == "ngram/chunked"
    assert {"ngram/sliding", "ngram/chunked", "ngram/lora"} <= set(protocol_entries(run.result))
    row = seed_row(run, "ngram/sliding", code_bytes=1000)
    assert row["val_bpb"] == run.result.score("ngram/sliding").val_bpb and row["eval_mode"] == "sliding+ngram"
    checks = {c.name: c for c in check_seed(run, "ngram/sliding", 1000, track="non_record_16mb")}
    assert checks["legality reports clean (C1-C4)"].ok and checks["scored line in the log"].ok
    assert "ngram_sliding_exact" in checks["scored line in the log"].detail
    bad = copy.deepcopy(run)
    bad.result.score("ngram/lora").ledger["legal"] = False  # planted: an unclaimed n-gram protocol broke a rule
    checks = {c.name: c for c in check_seed(bad, "mixed/sliding", 1000, track="non_record_16mb")}
    assert not checks["legality reports clean (C1-C4)"].ok
    assert "ngram/lora: legal=False" in checks["legality reports clean (C1-C4)"].detail
