"""Learning-rate, weight-decay and momentum schedules (SPEC §2.5, §3.D1-D3, B14).

No LR warmup. The LR multiplier applied to every group's ``base_lr``:

* ``WARMDOWN_FRAC > 0`` (fractional warmdown, #1394 onward): ``frac`` = fraction of training done (wall-clock over
  the cap when capped, else step over ``ITERATIONS``); ``mult = (1 - frac) / warmdown_frac`` once
  ``frac >= 1 - warmdown_frac``, else 1.
* otherwise, wall-clock cap on (baseline): ``step_ms = elapsed_ms / max(step, 1)``,
  ``warmdown_ms = WARMDOWN_ITERS * step_ms``, ``remaining = max(cap_ms - elapsed_ms, 0)``;
  ``mult = remaining / warmdown_ms`` once ``remaining <= warmdown_ms`` — a linear decay ending at the cap, using the
  running average step time; cap off: linear decay over the last ``WARMDOWN_ITERS`` of ``ITERATIONS``.
* ``MIN_LR`` floors the multiplier (#1787: 0.10).

Muon momentum ramps linearly from ``MUON_MOMENTUM_WARMUP_START`` to ``MUON_MOMENTUM`` over
``MUON_MOMENTUM_WARMUP_STEPS`` steps. WD taper (#1729): the Muon WD multiplier is 1 until ``WD_TAPER_START_FRAC`` of
training, then linear to ``WD_TAPER_FINAL_MULT`` at the end.
"""

from __future__ import annotations


def training_fraction(step: int, elapsed_ms: float, *, iterations: int, max_wallclock_ms: float | None) -> float:
    """Fraction of training done in [0, 1]: elapsed/cap with a wall-clock cap, else step/iterations."""
    if max_wallclock_ms is not None and max_wallclock_ms > 0:
        return min(max(elapsed_ms / max_wallclock_ms, 0.0), 1.0)
    return min(max(step / max(iterations, 1), 0.0), 1.0)


def lr_multiplier(step: int, elapsed_ms: float, *, warmdown_iters: int, iterations: int,
                  max_wallclock_ms: float | None, warmdown_frac: float = 0.0, min_lr: float = 0.0) -> float:
    """LR multiplier in [min_lr, 1] for optimizer step ``step`` (0-based) after ``elapsed_ms`` of training time."""
    if warmdown_frac > 0:
        frac = training_fraction(step, elapsed_ms, iterations=iterations, max_wallclock_ms=max_wallclock_ms)
        mult = (1.0 - frac) / warmdown_frac if frac >= 1.0 - warmdown_frac else 1.0
    elif warmdown_iters <= 0:
        mult = 1.0
    elif max_wallclock_ms is None or max_wallclock_ms <= 0:
        start = max(iterations - warmdown_iters, 0)
        if start <= step < iterations:
            mult = max((iterations - step) / max(warmdown_iters, 1), 0.0)
        else:
            mult = 1.0 if step < start else 0.0
    else:
        step_ms = elapsed_ms / max(step, 1)
        warmdown_ms = warmdown_iters * step_ms
        remaining = max(max_wallclock_ms - elapsed_ms, 0.0)
        mult = remaining / max(warmdown_ms, 1e-9) if remaining <= warmdown_ms else 1.0
    return max(mult, min_lr)


def muon_momentum(step: int, *, start: float, end: float, warmup_steps: int) -> float:
    """Linear momentum warmup: ``start`` at step 0 to ``end`` at ``warmup_steps`` and after."""
    frac = min(step / warmup_steps, 1.0) if warmup_steps > 0 else 1.0
    return (1 - frac) * start + frac * end


def wd_multiplier(frac: float, *, start_frac: float, final_mult: float) -> float:
    """WD taper: 1 until ``start_frac`` of training, then linear to ``final_mult`` at ``frac = 1``."""
    if start_frac >= 1.0 or frac <= start_frac:
        return 1.0
    t = min((frac - start_frac) / (1.0 - start_frac), 1.0)
    return 1.0 + t * (final_mult - 1.0)


def loop_phase(frac: float, step: int, *, max_loops: int, enable_at: tuple[float, ...] = (),
               start_step: int = 0) -> int:
    """Number of depth-recurrence loop passes active at this point of training (SPEC §3.C14).

    ``start_step > 0`` (RECUR_START_STEP, #1204/#1487): all loops from that step on. Otherwise ``enable_at``
    (ENABLE_LOOPING_AT): one fraction turns every loop on at once (#1394: 0.5, #1855: 0.35); several fractions turn
    loop k on at the k-th one (progressive recurrence, #1412: 0.5, 0.65); empty = looping from the start.
    """
    if max_loops <= 0:
        return 0
    if start_step > 0:
        return max_loops if step >= start_step else 0
    if not enable_at:
        return max_loops
    if len(enable_at) == 1:
        return max_loops if frac >= enable_at[0] else 0
    return min(max_loops, sum(frac >= f for f in enable_at))
