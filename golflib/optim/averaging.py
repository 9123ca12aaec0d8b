"""Weight averaging: EMA and SWA (SPEC §3.D7).

* EMA (#287): ``θ_ema ← d·θ_ema + (1 − d)·θ`` after every optimizer step, kept in fp32 (0.997 in #287, 0.9965 from
  #1445 on).
* SWA (#162/#180; "tight SWA" #374/#401): a running mean of snapshots taken every ``SWA_EVERY`` steps once the LR
  multiplier has fallen below ``SWA_START_LR_MULT`` (late warmdown). Snapshots are of the EMA weights when EMA is
  on, else of the live weights.

The weights actually exported are returned by :meth:`Averager.export_state` — SWA mean if it has a snapshot, else EMA,
else the live weights — and the training log says which (SPEC §7.2 trap 3: records that claimed SWA never applied
it).
"""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """fp32 exponential moving average of a module's float parameters and buffers (non-float entries copied).

    The live tensors are captured once (``state_dict`` views of the parameters and buffers, which optimizers and
    ``load_state_dict`` update in place) and grouped: fp32 entries are updated with two ``torch._foreach_*`` calls
    over the whole list (one fused kernel launch per chunk on CUDA instead of two per tensor, issue 14), other float
    entries (the bf16 tied embedding on CUDA) are converted one by one, non-float ones copied. The arithmetic is
    the per-tensor ``mul_(d).add_(θ, alpha=1 − d)``, so the values are those of the records' loop. A call with
    another module re-captures it."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA_DECAY={decay}: expected a value in (0, 1)")
        self.decay = decay
        self.state = {k: v.detach().float().clone() if v.is_floating_point() else v.detach().clone()
                      for k, v in model.state_dict().items()}
        self._capture(model)

    def _capture(self, model: nn.Module) -> None:
        live = model.state_dict()
        self._model = model
        self._f32 = ([self.state[k] for k, v in live.items() if v.dtype == torch.float32],
                     [v.detach() for v in live.values() if v.dtype == torch.float32])
        self._cast = [(self.state[k], v.detach()) for k, v in live.items()
                      if v.is_floating_point() and v.dtype != torch.float32]
        self._copy = [(self.state[k], v.detach()) for k, v in live.items() if not v.is_floating_point()]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """``θ_ema ← d·θ_ema + (1 − d)·θ`` for every float entry of ``model`` (the module given at construction;
        another one is re-captured first)."""
        if model is not self._model:
            self._capture(model)
        d = self.decay
        ema, live = self._f32
        if ema:
            torch._foreach_mul_(ema, d)
            torch._foreach_add_(ema, live, alpha=1.0 - d)
        for e, v in self._cast:
            e.mul_(d).add_(v.float(), alpha=1.0 - d)
        for e, v in self._copy:
            e.copy_(v)


class SWA:
    """Running mean of snapshots (fp32): ``mean ← mean + (x − mean)/n``."""

    def __init__(self):
        self.state: dict[str, torch.Tensor] | None = None
        self.count = 0

    @torch.no_grad()
    def add(self, state: dict[str, torch.Tensor]) -> None:
        self.count += 1
        if self.state is None:
            self.state = {k: v.detach().float().clone() if v.is_floating_point() else v.detach().clone()
                          for k, v in state.items()}
            return
        for k, v in state.items():
            if v.is_floating_point():
                self.state[k].add_(v.detach().float() - self.state[k], alpha=1.0 / self.count)
            else:
                self.state[k].copy_(v)


class Averager:
    """EMA and/or SWA bookkeeping for a training run.

    ``ema_decay = 0`` disables EMA; ``swa_every = 0`` disables SWA. Call :meth:`after_step` after each optimizer
    step with the 1-based step count and the LR multiplier used for it.
    """

    def __init__(self, model: nn.Module, ema_decay: float = 0.0, swa_every: int = 0, swa_start_lr_mult: float = 0.2):
        self.ema = EMA(model, ema_decay) if ema_decay > 0 else None
        self.swa = SWA() if swa_every > 0 else None
        self.swa_every = swa_every
        self.swa_start_lr_mult = swa_start_lr_mult
        self.swa_started_at: int | None = None

    def after_step(self, model: nn.Module, step: int, lr_mult: float) -> bool:
        """Update EMA; take an SWA snapshot when due. Returns True when a snapshot was taken."""
        if self.ema is not None:
            self.ema.update(model)
        if self.swa is not None and lr_mult < self.swa_start_lr_mult and step % self.swa_every == 0:
            if self.swa_started_at is None:
                self.swa_started_at = step
            self.swa.add(self.ema.state if self.ema is not None else model.state_dict())
            return True
        return False

    @property
    def source(self) -> str:
        """Which weights :meth:`export_state` returns: ``swa`` (at least two snapshots: a one-snapshot "average" is
        just an earlier point of the run, and #461 applies its SWA only when ``swa_count > 1``), ``ema`` or
        ``live``."""
        if self.swa is not None and self.swa.count > 1:
            return "swa"
        return "ema" if self.ema is not None else "live"

    def export_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The state dict to export, cast back to each live tensor's dtype."""
        live = model.state_dict()
        src = {"swa": lambda: self.swa.state, "ema": lambda: self.ema.state, "live": lambda: live}[self.source]()
        return {k: src[k].to(live[k].dtype) for k in live}
