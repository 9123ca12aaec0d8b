"""Deterministic fixture weights and the statistics compared between golflib and a record's code.

``fixture_state(names_shapes)`` gives every parameter a value that depends only on its golflib name and shape (a
``torch.Generator`` seeded from the CRC-32 of the name): matrices ``N(0, 1/fan_in)`` (fan_in = last dim), vectors and
scalars ``1 + 0.25·N(0, 1)``. Nothing is zero, so every gate, lambda and projection shows in the loss.

``init_stats(t)`` classifies a freshly initialised tensor (zero / constant / a few levels / orthogonal with its
gain / random with its std / per-element values of a vector) so the records' init rules can be compared without
their random draws; ``update_stats(new, old)`` reduces an update to its L2 norm and its projection on a fixed ±1
pattern.
"""

from __future__ import annotations

import math
import zlib

import torch
from torch import Tensor


def _gen(name: str, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(name.encode()) + 7919 * salt)


def fixture_tensor(name: str, shape: tuple[int, ...]) -> Tensor:
    g = _gen(name)
    if len(shape) >= 2:
        return torch.randn(shape, generator=g, dtype=torch.float32) / math.sqrt(shape[-1])
    return 1.0 + 0.25 * torch.randn(shape, generator=g, dtype=torch.float32)


def fixture_state(model: torch.nn.Module) -> dict[str, Tensor]:
    """Fixture values (float32) for every entry of ``model.state_dict()``, keyed by its name."""
    return {k: fixture_tensor(k, tuple(v.shape)) for k, v in model.state_dict().items()}


def init_stats(t: Tensor) -> dict:
    """``{"kind": zero|const|levels|orthogonal|random|values, ...}`` of an initialised tensor: ``value`` for
    constants (every element equal), ``values`` for tensors of at most 8 distinct values (first 4,096 elements) and
    for other vectors (first 64), ``gain`` (the common singular value) for orthogonal matrices, ``std`` for the
    rest."""
    t = t.detach().float()
    if t.numel() == 0 or bool((t == 0).all()):
        return {"kind": "zero"}
    flat = t.flatten()
    if bool((flat == flat[0]).all()):
        return {"kind": "const", "value": float(flat[0])}
    levels = torch.unique(flat)
    if levels.numel() <= 8:  # structured constants such as resid_mix's stacked ones and zeros
        return {"kind": "levels", "values": [float(v) for v in flat[:4096]]}
    if t.ndim == 2 and min(t.shape) >= 2:
        s = torch.linalg.svdvals(t)
        if float(s.max() - s.min()) <= 1e-4 * float(s.max()):
            return {"kind": "orthogonal", "gain": float(s.mean())}
    if t.ndim >= 2:
        return {"kind": "random", "std": float(t.std())}
    # a vector that is neither constant nor zero: keep its values (per-layer schedules such as 1/sqrt(2L))
    return {"kind": "values", "values": [float(x) for x in flat[:64]]}


def sign_pattern(name: str, shape: tuple[int, ...]) -> Tensor:
    return torch.randint(0, 2, shape, generator=_gen(name, salt=1)).float() * 2 - 1


def update_stats(name: str, new: Tensor, old: Tensor) -> dict:
    """``{"l2": ||new - old||, "dot": Σ (new - old) ⊙ s}`` with ``s`` a fixed ±1 pattern of the name (float64)."""
    d = (new.detach().double() - old.detach().double())
    return {"l2": float(d.norm()), "dot": float((d * sign_pattern(name, tuple(d.shape)).double()).sum())}
