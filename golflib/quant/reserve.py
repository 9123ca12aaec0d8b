"""The GPTQ calibration reserve (SPEC §3.B5, trap 8): when GPTQ reads training data after the loop, that read
counts against the 600-second training budget, so the loop stops ``GPTQ_RESERVE_SECONDS`` earlier. Kept apart from
:mod:`golflib.quant.posttrain` (the export itself, an optional module of the training core, :mod:`golflib.seams`)
because the training loop needs it whatever the export.
"""

from __future__ import annotations

from golflib.config import Config


def calibrates_on_train_data(cfg: Config) -> bool:
    """True when GPTQ reads training data after the loop (``MIXED_EXPORT``, ``GPTQ_ENABLED``,
    ``GPTQ_CALIBRATION=train``): that read counts against the training budget."""
    q = cfg.quant
    return q.mixed_export and q.gptq_enabled and q.gptq_calibration == "train"


def reserve_ms(cfg: Config) -> float:
    """Milliseconds the training loop must stop before ``MAX_WALLCLOCK_SECONDS`` so that train-data calibration
    finishes inside the training budget (``GPTQ_RESERVE_SECONDS``; 0 when not calibrating on train data).

    Raises ``ValueError`` when the reserve would leave no training time under the cap."""
    if not calibrates_on_train_data(cfg):
        return 0.0
    r, cap = cfg.quant.gptq_reserve_seconds, cfg.train.max_wallclock_seconds
    if cap > 0 and r >= cap:
        raise ValueError(f"GPTQ_RESERVE_SECONDS={r:g} leaves no training time under MAX_WALLCLOCK_SECONDS={cap:g}; "
                         f"lower the reserve, raise the cap, or set GPTQ_CALIBRATION=ar / MIXED_EXPORT=0")
    return 1000.0 * r
