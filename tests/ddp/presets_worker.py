"""Worker for test_every_preset_ddp.py: under torchrun (8 gloo processes), train and score every preset at CPU
scale through ``golflib.train.main``, one after another in the same process group. Rank 0 writes
``{preset: {"trained", "scored", "steps", "losses", "scores", "log"}}`` as JSON.

Usage: ``presets_worker.py OUT.json ROOT DATA_PATH TOKENIZER_PATH CASEOPS_DATA_PATH CASEOPS_TOKENIZER_PATH
PRESET[,PRESET...]``."""

import datetime
import json
import os
import sys
from pathlib import Path

import torch.distributed as dist

from golflib.presets import resolve
from golflib.train import main as train_main
from golflib.workbook.runs import load_metrics, load_result

out_path, root, data, tok, c_data, c_tok, names = sys.argv[1:8]
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
timeout = datetime.timedelta(seconds=300)  # a failing rank must not hang the others for gloo's default 30 minutes
store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]) + 1, world, rank == 0, timeout)
table = {}
for i, name in enumerate(names.split(",")):
    # golflib.train.main ends the process group; each preset starts a new one on its own prefix of one store
    dist.init_process_group("gloo", store=dist.PrefixStore(f"preset{i}", store), rank=rank, world_size=world,
                            timeout=timeout)
    caseops = resolve(name, environ={}).data.caseops_enabled
    run = Path(root) / name
    overrides = {
        "DATA_PATH": c_data if caseops else data, "TOKENIZER_PATH": c_tok if caseops else tok,
        "ITERATIONS": 3, "WARMUP_STEPS": 1, "VAL_LOSS_EVERY": 0, "VAL_MAX_TOKENS": 2048, "TRAIN_LOG_EVERY": 1,
        "TRAIN_SEQ_LEN": 64, "EVAL_SEQ_LEN": 64, "EVAL_STRIDE": 32, "TRAIN_BATCH_TOKENS": 1024,
        "VAL_BATCH_SIZE": 1024, "PREFLIGHT_BUDGET": 0, "MAX_WALLCLOCK_SECONDS": 0,
        # TTT kinds at toy sizes (the records' own kinds stay those of the preset)
        "TTT_CHUNK_TOKENS": 512, "TTT_EPOCHS": 1, "TTT_BATCH_SEQS": 2, "PHASED_TTT_PREFIX_DOCS": 4,
        "GLOBAL_TTT_CHUNK_TOKENS": 512, "GLOBAL_TTT_BATCH_SEQS": 2,
    }
    args = ["--preset", name, "--scale", "1.0" if name == "cpu-tiny" else "0.125", "--run-dir", str(run)]
    for k, v in overrides.items():
        args += ["--set", f"{k}={v}"]
    rc = train_main(args)  # returns after every rank has finished (its closing barrier)
    if rank == 0:
        res = load_result(run)
        losses = [e["train_loss"] for e in load_metrics(run) if e["kind"] == "train"]
        log = (run / "train.log").read_text()
        table[name] = {"trained": rc == 0 and len(losses) == 3 and all(l == l for l in losses), "steps": len(losses),
                       "losses": losses, "scores": {k: s.val_bpb for k, s in res.scores.items()},
                       "scored": "quantized/standard" in res.scores and all(s.val_bpb == s.val_bpb
                                                                          for s in res.scores.values()),
                       "world_size_line": next((l for l in log.splitlines() if l.startswith("world_size:")), ""),
                       "muon_sharded": "muon:sharded" in log}
    if dist.is_initialized():
        dist.destroy_process_group()
if rank == 0:
    Path(out_path).write_text(json.dumps(table, indent=1))
sys.stdout.flush()
os._exit(0)  # skip the interpreter teardown, where torch 2.13's gloo sometimes aborts (tests/optim/muon_dist_worker.py)
