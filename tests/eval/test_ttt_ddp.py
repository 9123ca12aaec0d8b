"""2-process gloo: chunked TTT with its gradient all-reduce equals one process with the same global batch; doc-LoRA
and phased TTT split documents across ranks and every rank's ledger still covers the whole stream."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
WORKER = Path(__file__).with_name("ttt_ddp_worker.py")


def run(tmp_path, nproc, batch):
    out = Path(tmp_path) / f"np{nproc}.json"
    cmd = [sys.executable] + (["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
                              if nproc > 1 else []) + [str(WORKER), str(out), str(batch)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ttt_ddp")
    return run(tmp, 1, batch=4), run(tmp, 2, batch=2)  # same global batch of 4 sequences


def test_two_process_ttt_matches_one_process(runs):
    one, two = runs
    c1, c2 = one["chunked"], two["chunked"]
    assert c2["details"]["world_size"] == 2 and c2["tokens"] == c1["tokens"]
    assert c2["details"]["optimizer_steps"] == c1["details"]["optimizer_steps"]
    assert c2["val_loss"] == pytest.approx(c1["val_loss"], abs=1e-5)
    assert c2["weights"] == pytest.approx(c1["weights"], abs=1e-4)  # the all-reduced steps are the same steps
    for kind in ("chunked", "lora", "phased"):
        rep = two[kind]["ledger"]
        assert rep["legal"] and rep["n_scored"] == rep["n_targets"] == two[kind]["tokens"], kind
    # documents are independent in doc-LoRA: splitting them across ranks changes nothing
    assert two["lora"]["val_loss"] == pytest.approx(one["lora"]["val_loss"], abs=1e-6)
    assert len(two["phased"]["details"]["phases"]) == 2


def test_two_process_record_protocols(runs):
    """Legacy windows: every rank's ledger holds the same declared tail repeat as one process and the score is
    the same; the #1855 phased protocol is legal on both ranks; the doc-isolated eval truncates each rank's range
    to whole batches (128 tokens / world / 32 = 4 sequences per batch on one process, 2 per rank on two)."""
    one, two = runs
    for kind in ("sliding_legacy", "chunked_legacy"):
        r1, r2 = one[kind]["ledger"], two[kind]["ledger"]
        assert r2["legal_except_declared"] and r2["declared"] == r1["declared"] != [], kind
        assert two[kind]["tokens"] == one[kind]["tokens"] > r2["n_targets"] == r2["n_scored"], kind
        assert two[kind]["val_loss"] == pytest.approx(one[kind]["val_loss"], abs=1e-5), kind
    ph = two["phased_record"]
    assert ph["ledger"]["legal"] and ph["ledger"]["n_scored"] == ph["ledger"]["n_targets"]
    # 4 batches in 2 rounds, at most one phase per round: boundaries 4, 8 run, 12 is never reached in time
    assert [p["boundary_docs"] for p in ph["details"]["phases"]] == [4, 8] and ph["details"]["adapters"] == "per_slot"
    seqs = one["doc"]["ledger"]["n_targets"] // 32
    shares = [seqs * (r + 1) // 2 - seqs * r // 2 for r in range(2)]
    assert one["doc"]["tokens"] == seqs // 4 * 4 * 32 and two["doc"]["tokens"] == sum(k // 2 * 2 for k in shares) * 32
    rep = two["doc"]["ledger"]
    assert rep["legal_except_declared"] and rep["n_scored"] + rep["declared"][0]["positions"] == rep["n_targets"]


def test_two_process_protocols_count_the_byte_sidecar_by_position(runs):
    """Each rank adds the sidecar bytes of the positions it scored; the all-reduced total is the whole stream's."""
    one, two = runs
    for kind in ("sidecar_sliding", "sidecar_chunked", "sidecar_lora"):
        assert two[kind]["bytes"] == one[kind]["bytes"] == one["sidecar_total"], kind
        assert two[kind]["val_loss"] == pytest.approx(one[kind]["val_loss"], abs=1e-5), kind
