"""Learning-rate and momentum schedules (SPEC §2.5).

No LR warmup. The multiplier applied to every group's ``base_lr``:

* wall-clock cap on: ``step_ms = elapsed_ms / max(step, 1)``, ``warmdown_ms = WARMDOWN_ITERS * step_ms``,
  ``remaining = max(cap_ms - elapsed_ms, 0)``; ``mult = remaining / warmdown_ms`` once ``remaining <= warmdown_ms``,
  else 1 — a linear decay to zero that ends at the cap, using the running average step time.
* cap off: linear decay over the last ``WARMDOWN_ITERS`` of ``ITERATIONS``.

Muon momentum ramps linearly from ``MUON_MOMENTUM_WARMUP_START`` to ``MUON_MOMENTUM`` over
``MUON_MOMENTUM_WARMUP_STEPS`` steps.
"""

from __future__ import annotations


def lr_multiplier(step: int, elapsed_ms: float, *, warmdown_iters: int, iterations: int,
                  max_wallclock_ms: float | None) -> float:
    """LR multiplier in [0, 1] for optimizer step ``step`` (0-based) after ``elapsed_ms`` of training time."""
    if warmdown_iters <= 0:
        return 1.0
    if max_wallclock_ms is None or max_wallclock_ms <= 0:
        start = max(iterations - warmdown_iters, 0)
        if start <= step < iterations:
            return max((iterations - step) / max(warmdown_iters, 1), 0.0)
        return 1.0 if step < start else 0.0
    step_ms = elapsed_ms / max(step, 1)
    warmdown_ms = warmdown_iters * step_ms
    remaining = max(max_wallclock_ms - elapsed_ms, 0.0)
    return remaining / max(warmdown_ms, 1e-9) if remaining <= warmdown_ms else 1.0


def muon_momentum(step: int, *, start: float, end: float, warmup_steps: int) -> float:
    """Linear momentum warmup: ``start`` at step 0 to ``end`` at ``warmup_steps`` and after."""
    frac = min(step / warmup_steps, 1.0) if warmup_steps > 0 else 1.0
    return (1 - frac) * start + frac * end
