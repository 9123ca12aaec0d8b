"""``golf bench ema``: the EMA update per training step, before and after issue 14 — milliseconds and the aten ops
(kernel launches on CUDA) it dispatches.

"Before" is the per-tensor loop over ``model.state_dict()`` every step (golflib until issue 14, and the records'
form); "after" is :class:`golflib.optim.averaging.EMA` (captured lists, two ``_foreach`` calls). Op counts come from
a ``TorchDispatchMode`` that counts every aten call reaching the dispatcher; ``launching_ops_per_update`` leaves out
the view-only ``detach`` (no kernel), so on CUDA it is one kernel launch each (a foreach op launches one fused
kernel per chunk of tensors).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from golflib.model.gpt import GPT, count_params
from golflib.optim.averaging import EMA
from golflib.presets import resolve
from golflib.workbook.bench import register


# metadata only: no kernel launch
VIEW_OPS = frozenset({"detach", "alias", "view", "_unsafe_view", "expand", "transpose", "t", "slice", "select",
                      "unsqueeze", "squeeze", "permute", "as_strided", "unbind", "split", "narrow", "_reshape_alias",
                      "empty", "_record_function_enter_new", "_record_function_exit"})  # + allocation, profiler marks


class OpCounter(TorchDispatchMode):
    """Counts aten ops dispatched inside the ``with`` block (``counts``: op name → calls)."""

    def __init__(self):
        super().__init__()
        self.counts: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))


def _per_tensor_update(state: dict, model: torch.nn.Module, d: float) -> None:
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                state[k].mul_(d).add_(v.detach().float(), alpha=1.0 - d)
            else:
                state[k].copy_(v)


@register("ema")
def bench_ema(run_dir: str | None = None, preset: str = "baseline", steps: int = 20, decay: float = 0.997,
              overrides: dict | None = None) -> dict[str, Any]:
    """ms and aten ops per EMA update of ``preset``'s full-size GPT (``overrides`` change the shape), per-tensor
    loop vs :class:`EMA`; the two results are checked equal."""
    cfg = resolve(preset, overrides or {}, environ={})
    torch.manual_seed(0)
    model = GPT(cfg.model)
    ema = EMA(model, decay)
    state = {k: v.clone() for k, v in ema.state.items()}
    out: dict[str, Any] = {"preset": preset, "params": count_params(model), "tensors": len(state)}
    for name, fn in (("per_tensor_state_dict", lambda: _per_tensor_update(state, model, decay)),
                     ("foreach_captured", lambda: ema.update(model))):
        fn()
        with OpCounter() as c:
            fn()
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        out[name] = {"ms_per_update": 1000 * (time.perf_counter() - t0) / steps, "aten_ops_per_update":
                     sum(c.counts.values()), "launching_ops_per_update": sum(n for op, n in c.counts.items()
                                                                             if op not in VIEW_OPS),
                     "ops": dict(c.counts.most_common())}
    out["equal"] = all(torch.equal(state[k], ema.state[k]) for k in state)
    out["op_reduction"] = out["per_tensor_state_dict"]["launching_ops_per_update"] / max(
        1, out["foreach_captured"]["launching_ops_per_update"])
    return out
