"""Worker for test_muon_banks.py: Parallel Muon under torchrun. Every rank holds the same matrices and its own local
gradients (rank-dependent); the sharded optimizer reduce-scatters them, clips by the global norm and all-gathers the
updates. Rank 0 writes the final matrices and the clip coefficient as JSON. Usage: ``muon_dist_worker.py OUT.json``."""

import json
import os
import sys

import torch
import torch.distributed as dist

from golflib.optim.muon import Muon
from golflib.runtime import init_runtime

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from test_muon_banks import SHAPES, local_grads, start_params  # noqa: E402

rt = init_runtime("cpu")
params = start_params()
opt = Muon(params, lr=0.05, momentum=0.9, ns_dtype=torch.float32, weight_decay=0.1, row_norm=True, sharded=True)
coefs = []
for step in range(3):
    for p, g in zip(params, local_grads(step, rt.rank)):
        p.grad = g
    opt.reduce_grads()
    norm = opt.grad_sq_norm().sqrt()
    coef = torch.clamp(1.0 / (norm + 1e-6), max=1.0)  # clip to norm 1
    opt.scale_grads(coef)
    coefs.append(float(coef))
    opt.step()
owned = sum(1 for p in params if opt.momentum_of(p) is not None)
counts = [torch.zeros((), dtype=torch.int64) for _ in range(rt.world_size)]
dist.all_gather(counts, torch.tensor(owned))
if rt.rank == 0:
    json.dump({"params": [p.detach().tolist() for p in params], "coefs": coefs,
               "owned": [int(c) for c in counts]}, open(sys.argv[1], "w"))
dist.barrier()
dist.destroy_process_group()
sys.stdout.flush()
# torch 2.13's gloo aborts ~1 in 7 of these processes in the interpreter's teardown ("terminate called without an
# active exception") after all the work and the output are done; skip that teardown
os._exit(0)
