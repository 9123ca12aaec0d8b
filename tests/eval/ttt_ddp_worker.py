"""Worker for test_ttt_ddp.py: run each TTT kind on the tiny model/stream of test_ttt.py under torchrun (or alone)
and write the rank-0 results as JSON. Usage: ``ttt_ddp_worker.py OUT.json CHUNKED_BATCH_SEQS``."""

import json
import os
import sys

import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_byte_sidecar import random_sidecar  # noqa: E402
from test_ttt import CHUNK, LORA, luts, periodic_stream, tiny_model  # noqa: E402
from ttt_calls import run_chunked, run_lora, run_phased  # noqa: E402

from golflib.eval.doc_eval import eval_doc_isolated  # noqa: E402
from golflib.eval.sliding import eval_sliding  # noqa: E402
from golflib.runtime import init_runtime  # noqa: E402

rt = init_runtime("cpu")
kw = dict(rank=rt.rank, world_size=rt.world_size, device=rt.device)
toks = periodic_stream(n_docs=16)
out = {}
model = tiny_model()
res = run_chunked(model, toks, luts(), epochs=2, lr=0.05, **{**CHUNK, "batch_seqs": int(sys.argv[2])}, **kw)
out["chunked"] = {**res.to_dict(), "weights": [float(p.double().sum()) for p in model.parameters()]}
out["lora"] = run_lora(tiny_model(), toks, luts(), lr=0.03, **LORA, **kw).to_dict()
out["phased"] = run_phased(tiny_model(), toks, luts(), lr=0.03, prefix_docs=12, num_phases=2, global_lr=0.05,
                                global_chunk_tokens=128, global_batch_seqs=2, **LORA, **kw).to_dict()
# the records' protocols: legacy windows (a declared tail repeat on every rank's ledger), #1855 phased TTT and its
# doc-isolated eval (each rank's range truncated to whole batches)
out["sliding_legacy"] = eval_sliding(tiny_model(), toks, luts(), seq_len=32, stride=16, batch_seqs=4,
                                     window_set="legacy", **kw).to_dict()
out["chunked_legacy"] = run_chunked(tiny_model(), toks, luts(), epochs=1, lr=0.05, window_set="legacy_stride",
                                         **{**CHUNK, "batch_seqs": int(sys.argv[2])}, **kw).to_dict()
out["phased_record"] = run_phased(tiny_model(), toks, luts(), lr=0.03, prefix_docs=12, num_phases=3,
                                       global_lr=0.05, global_chunk_tokens=128, global_batch_seqs=2, lora_alpha=8.0,
                                       warm_start_a=True, adapters="per_slot", last_window="doc_end", seed=3,
                                       **LORA, **kw).to_dict()
# a CaseOps-style byte sidecar (random bytes per position): each rank counts the positions it scored
side = random_sidecar(toks, seed=5)
out["sidecar_total"] = int(side.per_token[1:].sum())
out["sidecar_sliding"] = eval_sliding(tiny_model(), toks, side, seq_len=32, stride=16, batch_seqs=4, **kw).to_dict()
out["sidecar_chunked"] = run_chunked(tiny_model(), toks, side, epochs=1, lr=0.05,
                                          **{**CHUNK, "batch_seqs": int(sys.argv[2])}, **kw).to_dict()
out["sidecar_lora"] = run_lora(tiny_model(), toks, side, lr=0.03, **LORA, **kw).to_dict()
doc_toks = toks[:(toks.numel() - 1) // 32 * 32 + 1]
out["doc"] = eval_doc_isolated(tiny_model(), doc_toks, luts(), seq_len=32, batch_tokens=128, **kw).to_dict()
if rt.master:
    with open(sys.argv[1], "w") as fh:
        json.dump(out, fh)
print(f"ttt_ddp_worker: rank {rt.rank} done", flush=True)  # tells a teardown abort from a failure in the work
if rt.distributed:
    dist.barrier()  # both ranks done before teardown
    dist.destroy_process_group()
    # About 1 full-suite run in 3, rank 0 then aborted in interpreter finalization ("terminate called without an
    # active exception": gloo worker threads still holding tensors while Python shuts down, cf. pytorch PR #179291).
    # The results are written and the group destroyed; leave without finalization.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
