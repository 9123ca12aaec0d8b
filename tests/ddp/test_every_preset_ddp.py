"""Every preset trains and scores under 8 gloo processes (issue 14): one torchrun, every preset at CPU scale one
after another (3 steps after a warm-up step, the whole export and every scoring protocol of the preset, TTT
included), with the smoke presets' 2 micro-batches spread over 8 ranks and Parallel Muon sharding the matrices."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from golflib.presets import PRESETS

pytestmark = pytest.mark.slow


def test_every_preset_trains_and_scores_on_8_gloo_ranks(tmp_path, embedded_data, caseops_data):
    out = tmp_path / "table.json"
    names = sorted(PRESETS)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=8",
           str(Path(__file__).with_name("presets_worker.py")), str(out), str(tmp_path / "runs"),
           str(embedded_data["data_path"]), str(embedded_data["tokenizer_path"]), str(caseops_data[2]),
           str(caseops_data[3]), ",".join(names)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    table = json.loads(out.read_text())
    print("\npreset | trains | scores | score keys | world_size line")
    for name in names:
        row = table[name]
        print(f"{name} | {'yes' if row['trained'] else 'NO'} | {'yes' if row['scored'] else 'NO'} | "
              f"{', '.join(sorted(row['scores']))} | {row['world_size_line']}")
    assert sorted(table) == names
    bad = {n: r for n, r in table.items() if not (r["trained"] and r["scored"] and r["muon_sharded"])}
    assert not bad, bad
    assert all(r["world_size_line"].startswith("world_size:8 grad_accum_steps:1") for r in table.values())
