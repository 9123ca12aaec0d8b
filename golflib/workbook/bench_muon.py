"""``golf bench muon``: one Muon step, before and after issue 14 — aten ops (kernel launches on a GPU) and
milliseconds per rank, on one process and on ``--world`` gloo processes.

"Before" is golflib's Muon until issue 14, the baseline ``train_gpt.py``'s algorithm (reproduced here to measure it):
matrix ``i`` orthogonalised by rank ``i % world`` one at a time (momentum, Nesterov, Newton–Schulz, shape scale),
written into a zero-filled flat buffer of every update, one all-reduce SUM, then one add per matrix on every rank.
"After" is :class:`golflib.optim.muon.Muon`: banks of same-shape matrices, batched Newton–Schulz, Parallel Muon's
reduce-scatter of local gradients and all-gather of updates (SPEC §3.D6, #399). Ops are counted with
:class:`golflib.workbook.bench_optim.OpCounter` (every aten call reaching the dispatcher, collectives included;
view-only ops left out of ``launching``). The compiled Newton–Schulz of the CUDA path is counted as the bank's
extern matmuls (profiler) plus the fused kernels inductor generated for it; ``after_compiled`` replaces the eager
Newton–Schulz ops with those.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

import torch
import torch.distributed as dist

from golflib.model.gpt import GPT
from golflib.optim.build import split_params
from golflib.optim.muon import Muon, newton_schulz_batched, ns_coefficients
from golflib.presets import resolve
from golflib.workbook.bench import register
from golflib.workbook.bench_optim import VIEW_OPS, OpCounter


def _ns_2d(g: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The classic quintic on one 2-D matrix, as golflib (and the baseline) ran it before issue 14."""
    x = g.to(dtype)
    x = x / (x.norm() + 1e-7)
    transposed = g.size(0) > g.size(1)
    x = x.T if transposed else x
    for a, b, c in ns_coefficients("ns5", 5):
        A = x @ x.T
        B = b * A + c * A @ A
        x = a * x + B @ x
    return x.T if transposed else x


@torch.no_grad()
def _round_robin_step(params: list[torch.Tensor], bufs: dict, lr: float, mu: float, rank: int, world: int,
                      dtype: torch.dtype) -> None:
    """golflib's Muon step before issue 14 (the baseline's distributed Muon), gradients already averaged."""
    total = sum(p.numel() for p in params)
    flat = torch.zeros(total, device=params[0].device, dtype=dtype)
    offset = 0
    for i, p in enumerate(params):
        if i % world == rank:
            g = p.grad
            buf = bufs.setdefault(i, torch.zeros_like(g))
            buf.mul_(mu).add_(g)
            u = g.add(buf, alpha=mu)
            o = _ns_2d(u, dtype) * max(1.0, p.size(0) / p.size(1)) ** 0.5
            flat[offset:offset + p.numel()] = o.reshape(-1)
        offset += p.numel()
    if world > 1:
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p in params:
        p.add_(flat[offset:offset + p.numel()].view_as(p).to(p.dtype), alpha=-lr)
        offset += p.numel()


def _count(fn) -> dict[str, Any]:
    with OpCounter() as c:
        fn()
    return {"aten_ops": sum(c.counts.values()),
            "launching": sum(n for op, n in c.counts.items() if op not in VIEW_OPS), "ops": dict(c.counts.most_common())}


def _timed(fn, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return 1000 * (time.perf_counter() - t0) / steps


def _compiled_ns_kernels(shape: tuple[int, ...], dtype: torch.dtype) -> dict[str, int]:
    """Kernels one compiled batched Newton–Schulz call runs for a bank slice ``shape``: extern matmuls (profiler)
    and inductor's generated (fused) kernels."""
    import torch._inductor.metrics as metrics
    from torch.profiler import ProfilerActivity, profile

    coeffs = tuple(ns_coefficients("ns5", 5))
    torch._dynamo.reset()
    fn = torch.compile(newton_schulz_batched, dynamic=False, fullgraph=True)
    g = torch.randn(*shape)
    metrics.reset()
    fn(g, coeffs, 1e-7, dtype, False)
    generated = int(metrics.generated_kernel_count)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn(g, coeffs, 1e-7, dtype, False)
    extern = sum(1 for e in prof.events() if e.name in ("aten::bmm", "aten::mm", "aten::baddbmm"))
    return {"extern_matmuls": extern, "generated_kernels": generated, "launches": extern + generated}


def _measure(preset: str, overrides: dict, steps: int, dtype: torch.dtype, world: int, rank: int) -> dict[str, Any]:
    cfg = resolve(preset, overrides, environ={})
    torch.manual_seed(0)
    model = GPT(cfg.model)
    params = split_params(model, cfg.optim.embed_proj_optimizer)["matrix"]
    gen = torch.Generator().manual_seed(rank)
    for p in params:
        p.grad = 1e-3 * torch.randn(p.shape, generator=gen)
    out: dict[str, Any] = {"matrices": len(params), "shapes": sorted({tuple(p.shape) for p in params})}
    bufs: dict = {}
    before = lambda: _round_robin_step(params, bufs, 1e-4, 0.95, rank, world, dtype)  # noqa: E731
    before()
    out["before"] = {**_count(before), "ms": _timed(before, steps)}
    opt = Muon(params, lr=1e-4, momentum=0.95, ns_dtype=dtype, sharded=world > 1)
    opt.step()
    calls: list[tuple[int, ...]] = []  # the shapes the step's Newton–Schulz calls get

    def recording_ns(g, *a):
        calls.append(tuple(g.shape))
        return newton_schulz_batched(g, *a)

    opt._ns = recording_ns
    out["after"] = {**_count(opt.step), "ms": _timed(opt.step, steps)}
    calls = calls[:len(calls) // (steps + 1)]
    banks = [b for group in opt.banks() for b in group]
    out["banks"] = [{"shape": list(b.shape), "matrices": b.n, "slice_per_rank": b.shard} for b in banks]
    out["newton_schulz_calls"] = [list(c) for c in calls]
    ns_eager = sum(_count(lambda c=c: newton_schulz_batched(torch.randn(*c), tuple(ns_coefficients("ns5", 5)),
                                                            1e-7, dtype, False))["launching"] for c in calls)
    if rank == 0:
        ns_compiled = sum(_compiled_ns_kernels(c, dtype)["launches"] for c in calls)
        out["after_compiled"] = {"launching": out["after"]["launching"] - ns_eager + ns_compiled,
                                 "newton_schulz_eager_ops": ns_eager, "newton_schulz_compiled_kernels": ns_compiled}
    out["launch_reduction"] = out["before"]["launching"] / max(1, out["after"]["launching"])
    if "after_compiled" in out:
        out["launch_reduction_compiled"] = out["before"]["launching"] / max(1, out["after_compiled"]["launching"])
    return out


def _worker(rank: int, world: int, store_dir: str, args: tuple) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_dir}/store", rank=rank, world_size=world)
    try:
        res = _measure(*args, world=world, rank=rank)
        if rank == 0:
            with open(os.path.join(store_dir, "result.json"), "w") as f:
                json.dump(res, f)
    finally:
        dist.destroy_process_group()


@register("muon")
def bench_muon(run_dir: str | None = None, preset: str = "baseline", layers: int = 11, worlds: tuple = (1, 8),
               steps: int = 2, dtype: str = "bfloat16", overrides: dict | None = None) -> dict[str, Any]:
    """Ops and ms per rank of one Muon step of ``preset`` at ``layers`` layers (11 × 512 by default), before and
    after, for each world size in ``worlds`` (> 1: that many gloo processes on this machine; rank 0 reported)."""
    ov = {"NUM_LAYERS": layers, **(overrides or {})}
    out: dict[str, Any] = {"preset": preset, "overrides": ov, "dtype": dtype}
    args = (preset, ov, steps, getattr(torch, dtype))
    for world in worlds:
        if world == 1:
            out["world_1"] = _measure(*args, world=1, rank=0)
            continue
        import torch.multiprocessing as mp

        with tempfile.TemporaryDirectory() as d:
            mp.spawn(_worker, args=(world, d, args), nprocs=world, join=True)
            with open(os.path.join(d, "result.json")) as f:
                out[f"world_{world}"] = json.load(f)
    return out
