"""Progress of a long phase (evaluation protocols, TTT, GPTQ calibration, the quantized export): a tqdm bar when
someone is watching (a terminal, or a Jupyter kernel with ipywidgets), otherwise a line every ``every`` seconds with
the count, the elapsed time and an ETA, for example::

    progress:ttt/lora 12/40 rounds (30%) elapsed:36s eta:84s

Lines go to stderr, never into ``train.log`` (the metric stream), and only on rank 0. A launcher that captures the
process output (:mod:`golflib.workbook.launch`) echoes them into the notebook, so a 2-minute TTT pass is not silent.
"""

from __future__ import annotations

import sys
import time

EVERY_S = 30.0  # seconds between progress lines when no bar is shown


def rank0() -> bool:
    """True outside ``torch.distributed`` or on its rank 0: where progress is shown."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def interactive() -> bool:
    """True when stderr is a terminal or the code runs in a Jupyter kernel."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)()) or "ipykernel" in sys.modules


class Progress:
    """Count ``total`` steps of the phase ``label`` (``unit``: what a step is). ``enabled=False`` (other ranks)
    reports nothing. Use as a context manager, calling :meth:`update` after each step."""

    def __init__(self, total: int, label: str, unit: str = "steps", *, enabled: bool = True,
                 every: float | None = None, stream=None):
        self.total, self.label, self.unit = int(total), label, unit
        self.every = EVERY_S if every is None else float(every)
        self.enabled = enabled and self.total > 0
        self.n, self.t0 = 0, time.perf_counter()
        self.last = self.t0
        self.stream = stream if stream is not None else sys.stderr
        self.bar = None
        if self.enabled and stream is None and interactive():
            try:
                from tqdm.auto import tqdm
            except ImportError:  # the bundle may run where tqdm is absent: the periodic lines are shown instead
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=self.total, desc=label, unit=unit, leave=False, mininterval=1.0)

    def line(self, now: float | None = None) -> str:
        """The periodic progress line at time ``now`` (``time.perf_counter()`` seconds)."""
        now = time.perf_counter() if now is None else now
        elapsed = now - self.t0
        eta = (self.total - self.n) * elapsed / self.n if self.n else float("nan")
        return (f"progress:{self.label} {self.n}/{self.total} {self.unit} ({100 * self.n / self.total:.0f}%) "
                f"elapsed:{elapsed:.0f}s eta:{eta:.0f}s")

    def update(self, n: int = 1) -> None:
        if not self.enabled:
            return
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            print(self.line(now), file=self.stream, flush=True)

    def wrap(self, items):
        """Yield from ``items``, counting one step after each."""
        for item in items:
            yield item
            self.update()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
