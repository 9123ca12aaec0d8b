"""Device, distributed and precision policy (DESIGN.md "Device policy").

CUDA speedups are automatic when present — bf16 autocast, NCCL, ``torch.compile`` — and every path has a plain
CPU fallback (fp32, gloo, eager) that the tests exercise.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Runtime:
    """Where this process runs: ``rank``/``world_size``/``local_rank`` from torchrun's env vars (0/1/0 otherwise)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    distributed: bool

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"


def init_runtime(device: str = "auto") -> Runtime:
    """Read torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, pick the device and start the process group
    (NCCL on CUDA, gloo on CPU). ``device``: ``auto`` | ``cpu`` | ``cuda``. Raises ``RuntimeError`` when ``cuda`` is
    requested without a GPU, ``ValueError`` for a bad ``WORLD_SIZE``."""
    distributed = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world <= 0:
        raise ValueError(f"WORLD_SIZE must be positive, got {world}")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("DEVICE=cuda requested but torch.cuda.is_available() is False")
    if use_cuda:
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        dev = torch.device("cpu")
        if distributed and world > 1:  # share the cores instead of oversubscribing them
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world))))
    if distributed and world > 1 and not dist.is_initialized():
        if use_cuda:
            dist.init_process_group(backend="nccl", device_id=dev)
        else:
            dist.init_process_group(backend="gloo")
        dist.barrier()
    return Runtime(rank, world, local_rank, dev, distributed and world > 1)


PRECISIONS = ("auto", "bf16", "fp32")
PRECISION = "auto"  # set by set_precision (PRECISION): the process's policy for autocast() and the dtype layout


def set_precision(mode: str) -> None:
    """``PRECISION`` for this process: ``auto`` — bf16 autocast and the bf16 dtype layout on CUDA, fp32 elsewhere
    (the records); ``bf16`` — the same on any device, the CPU included (CPU bf16 autocast: how the tests run the
    CUDA path's dtypes without a GPU); ``fp32`` — no autocast and fp32 weights everywhere. Raises ``ValueError``
    for another mode."""
    global PRECISION
    if mode not in PRECISIONS:
        raise ValueError(f"PRECISION={mode!r}: expected one of {', '.join(PRECISIONS)}")
    PRECISION = mode


def uses_bf16(device: torch.device) -> bool:
    """Whether :func:`autocast` and :func:`cast_model_for_device` use bf16 on ``device`` under ``PRECISION``."""
    return PRECISION == "bf16" or (PRECISION == "auto" and torch.device(device).type == "cuda")


def autocast(device: torch.device):
    """bf16 autocast on ``device`` when :func:`uses_bf16` (CUDA by default); a no-op context (fp32) otherwise."""
    device = torch.device(device)
    if uses_bf16(device):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """In-place SUM all-reduce when a process group is up; identity otherwise."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def should_compile(setting: str, device: torch.device) -> bool:
    """``USE_COMPILE``: ``auto`` compiles on CUDA only; ``1``/``0`` force it."""
    return setting == "1" or (setting == "auto" and device.type == "cuda")


def cast_model_for_device(model: torch.nn.Module, device: torch.device, control_patterns: tuple[str, ...]) -> None:
    """With bf16 (:func:`uses_bf16`: CUDA by default): the official dtype layout — model in bf16, then
    ``CastedLinear`` weights and <2-D / control parameters back to fp32 (the tied embedding stays bf16, SPEC §2.2
    ⚠). Otherwise everything stays fp32."""
    if not uses_bf16(device):
        return
    from golflib.model.layers import CastedLinear

    model.bfloat16()
    for m in model.modules():
        if isinstance(m, CastedLinear):
            m.float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if (p.ndim < 2 or any(c in name for c in control_patterns)) and p.dtype != torch.float32:
                p.data = p.data.float()


def describe_device(rt: Runtime) -> dict:
    """JSON-able description of the hardware for ``config.json`` and logs."""
    info = {"device": str(rt.device), "world_size": rt.world_size, "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if rt.is_cuda:
        info["gpu"] = torch.cuda.get_device_name(rt.device)
        info["cuda"] = torch.version.cuda
    return info
