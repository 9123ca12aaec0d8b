"""``golf bench muon`` and ``golf bench loader`` (issue 14): the JSON they write. Op counts do not depend on the
matrices' sizes, so the 11-layer baseline at width 64 counts exactly what the full width does; times are reported,
never asserted."""

import json

import pytest

from golflib.workbook.bench import run_bench

pytestmark = pytest.mark.slow


def test_bench_muon_counts_before_and_after_on_one_and_two_ranks(tmp_path):
    out = tmp_path / "muon.json"
    r = run_bench("muon", out=str(out), worlds=(1, 2), steps=1, dtype="float32",
                  overrides={"MODEL_DIM": 64, "NUM_HEADS": 4, "NUM_KV_HEADS": 2})
    assert json.loads(out.read_text())["bench"] == "muon"
    one, two = r["world_1"], r["world_2"]
    assert one["matrices"] == two["matrices"] == 66  # 11 layers x (q, k, v, o, fc, proj)
    assert [b["matrices"] for b in one["banks"]] == [22, 22, 11, 11]
    assert len(one["newton_schulz_calls"]) == 4 and len(two["newton_schulz_calls"]) == 1  # merged on 2 ranks
    assert one["launch_reduction"] >= 5 and one["launch_reduction_compiled"] >= 5
    assert two["after"]["ops"].get("_reduce_scatter_base_") == 1 and two["after"]["ops"].get("_allgather_base_") == 1
    assert two["before"]["ops"].get("allreduce_") == 1
    assert two["after"]["launching"] < two["before"]["launching"]


def test_bench_loader_reports_the_wait_of_both_forms(tmp_path):
    r = run_bench("loader", out=str(tmp_path / "loader.json"), tokens_per_rank=4096, seq_len=256, steps=4,
                  compute_ms=1.0)
    assert set(r["kinds"]) == {"sequential", "packed"}
    for row in r["kinds"].values():
        assert row["wait_ms_per_step_before"] > 0 and row["wait_ms_per_step_after"] >= 0
