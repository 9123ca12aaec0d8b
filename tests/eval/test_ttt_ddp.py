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
    out = tmp_path / f"np{nproc}.json"
    cmd = [sys.executable] + (["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
                              if nproc > 1 else []) + [str(WORKER), str(out), str(batch)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_two_process_ttt_matches_one_process(tmp_path):
    one, two = run(tmp_path, 1, batch=4), run(tmp_path, 2, batch=2)  # same global batch of 4 sequences
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
