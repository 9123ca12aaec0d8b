"""Muon: momentum + Newton-Schulz orthogonalised updates for 2-D matrices (SPEC §2.4, §3.D2-D6).

Per matrix: ``buf = mu*buf + g``; Nesterov ``u = g + mu*buf``; optional MuonEq-R row normalisation
``u_i /= max(‖u_i‖, 1e-7)`` (D4, arXiv 2603.28254, #1217/#1260); ``O = NS(u)`` with the classic quintic or the
Polar Express per-iteration coefficients (D5, #1344/#1787); ``O *= sqrt(max(1, rows/cols))``; decoupled weight
decay ``W *= 1 - lr*wd`` (D3, #65 onward); ``W -= lr * O``. Source: Keller Jordan's Muon (modded-nanogpt), as in the
challenge's baseline ``train_gpt.py``.

**Banks** (the systems half of #399 "Parameter banking + Parallel Muon", in #549 and #1855; SPEC §3.D6). The matrices
are grouped by shape into banks, and every step runs on a bank as a whole: one ``torch.stack`` of the gradients,
the momentum buffer kept as one ``[n, rows, cols]`` tensor, Newton–Schulz batched over the leading dim (``@`` on
3-D tensors), one ``_foreach`` weight decay and one ``_foreach`` update — a few dozen kernels per bank instead of
that many per matrix (``golf bench muon`` counts them). With ``compile_ns`` the batched Newton–Schulz is one
``torch.compile`` graph per batch shape (the records compile theirs). The parameters stay per-matrix (the model's
names and the export are unchanged); only the optimizer's arithmetic is batched.

**Sharding** across ranks (#399's Parallel Muon). A bank of ``n`` matrices is padded to a multiple of the world size
and rank ``r`` owns the contiguous slice ``[r·s, (r+1)·s)`` (``s = n_pad / world``): it keeps the momentum of those
matrices only and orthogonalises them — the slices of all its banks in ONE zero-padded batched call (see
:class:`Muon`) — and one all-gather per lane (the banks sharing a dtype and device, laid out in one flat buffer) gives
every rank every update (the baseline instead all-reduced a zero-filled buffer of every update: twice the traffic).
With ``sharded=True`` the gradients arrive *local* (the trainer keeps the Muon matrices out of DDP's all-reduce):
:meth:`Muon.reduce_grads` reduce-scatters each lane (``ReduceOp.AVG``; asynchronous on NCCL, launched before the
clipping and the Adam steps), so each rank receives exactly the averaged gradients of its own slices — one
reduce-scatter plus one all-gather instead of DDP's all-reduce plus the update all-reduce. Without ``sharded`` the
gradients are already averaged (DDP) and each rank slices its own part. Every matrix's update is computed by one
rank with the same arithmetic up to the order of float sums, so the result does not depend on the world size. A
matrix without a gradient (DDP's unused parameters) counts as a zero gradient; its momentum is zero until its first
gradient, so its update stays zero until then.

``banked=True`` reproduces the arithmetic of the parameter-bank records (#399 Parallel Muon: #549, #1019, #1855):
the gradient is cast to bf16 before the momentum, the momentum buffer and the Nesterov sum stay bf16, MuonEq-R
divides by the fp32 row norm cast to bf16, Newton–Schulz normalises after the transpose and computes
``b·A + c·(A·A)``, and the shape scale enters the step size instead of the bf16 update.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

# torch >= 2.13 names the flat collectives *_single (the *_tensor names warn); the records' torch 2.9 has only those
_REDUCE_SCATTER = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
_ALL_GATHER = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor

NS5_COEFFS = (3.4445, -4.7750, 2.0315)
# Polar Express (#1344 → #1787): one minimax-optimal (a, b, c) per iteration; later iterations reuse the last.
POLAR_EXPRESS_COEFFS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)


def ns_coefficients(kind: str, steps: int) -> list[tuple[float, float, float]]:
    """Per-iteration ``(a, b, c)``: ``ns5`` repeats the classic quintic; ``polar_express`` uses the five tuned
    tuples (the last one repeated beyond five steps). Raises ``ValueError`` for another ``kind``."""
    if kind == "ns5":
        return [NS5_COEFFS] * steps
    if kind == "polar_express":
        return [POLAR_EXPRESS_COEFFS[min(i, len(POLAR_EXPRESS_COEFFS) - 1)] for i in range(steps)]
    raise ValueError(f"MUON_NS_COEFFS={kind!r}: expected ns5 or polar_express")


def newton_schulz_batched(g: Tensor, coeffs: tuple[tuple[float, float, float], ...], eps: float = 1e-7,
                          dtype: torch.dtype = torch.bfloat16, banked: bool = False) -> Tensor:
    """Newton–Schulz over a bank: ``g`` ``[n, rows, cols]`` → ``[n, rows, cols]`` in ``dtype``, each slice the
    approximate polar factor of its matrix (see :func:`zeropower_via_newtonschulz5`; one iteration per entry of
    ``coeffs``). The per-matrix form normalises by the Frobenius norm before the transpose and computes
    ``(b·A + (c·A)·A)``; ``banked`` the records' order (transpose, normalise, ``b·A + c·(A·A)``)."""
    x = g.to(dtype)
    transposed = x.size(-2) > x.size(-1)
    if not banked:
        x = x / (x.norm(dim=(-2, -1), keepdim=True) + eps)
    x = x.mT if transposed else x
    if banked:
        x = x / (x.norm(dim=(-2, -1), keepdim=True) + eps)
    for a, b, c in coeffs:
        A = x @ x.mT
        B = b * A + c * (A @ A) if banked else b * A + c * A @ A
        x = a * x + B @ x
    return x.mT if transposed else x


def zeropower_via_newtonschulz5(g: Tensor, steps: int = 5, eps: float = 1e-7,
                                dtype: torch.dtype = torch.bfloat16, coeffs: str = "ns5",
                                banked: bool = False) -> Tensor:
    """Approximate the orthogonal polar factor ``U Vᵀ`` of a 2-D matrix ``g`` ([rows, cols]).

    ``X = g/(‖g‖_F + eps)`` in ``dtype`` (bf16 like the records; pass fp32 for exact tests), transposed so that
    rows <= cols, then ``steps`` iterations of ``A = X Xᵀ; X = a X + (b A + c A²) X`` with the coefficients of
    :func:`ns_coefficients` (classic ``(3.4445, -4.7750, 2.0315)`` by default). Returns a tensor of ``g``'s shape in
    ``dtype`` whose singular values lie roughly in [0.7, 1.2] (the classic quintic is tuned for speed, not exact
    convergence; Polar Express lands closer to 1). ``banked``: the bank records' rounding order (module docstring).
    Raises ``ValueError`` for a tensor that is not 2-D.
    """
    if g.ndim != 2:
        raise ValueError(f"Newton-Schulz expects a 2-D matrix, got shape {tuple(g.shape)}")
    return newton_schulz_batched(g[None], tuple(ns_coefficients(coeffs, steps)), eps, dtype, banked)[0]


def _shape_scale(p: Tensor) -> float:
    """``sqrt(max(1, rows/cols))``: Muon's step size for a tall matrix."""
    return max(1.0, p.size(-2) / p.size(-1)) ** 0.5


class _Bank:
    """Same-shape matrices of one param group (``shape`` ``(rows, cols)``) and this rank's slice ``[lo, hi)`` of
    them. Padded layout for the collectives: ``n_pad`` (a multiple of the world size) slots, ``shard = n_pad / world``
    per rank, at ``offset`` elements into the rank's part of its lane's flat buffer."""

    def __init__(self, params: list[Tensor], rank: int, world: int):
        self.params = params
        self.n = len(params)
        self.shard = -(-self.n // world)
        self.n_pad = self.shard * world
        self.lo, self.hi = min(rank * self.shard, self.n), min((rank + 1) * self.shard, self.n)
        self.shape = tuple(params[0].shape)
        self.tall = self.shape[0] > self.shape[1]
        self.scale = _shape_scale(params[0])
        self.numel = self.shard * self.shape[0] * self.shape[1]  # elements per rank in the flat buffers
        self.offset = 0
        self.zero: Tensor | None = None  # a zero matrix standing in for a missing gradient or a padding slot

    def zeros(self) -> Tensor:
        if self.zero is None:
            self.zero = torch.zeros_like(self.params[0])
        return self.zero

    def slice_of(self, flat: Tensor) -> Tensor:
        """This bank's ``[shard, rows, cols]`` view of a rank's flat buffer."""
        return flat[self.offset:self.offset + self.numel].view(self.shard, *self.shape)


class _Lane:
    """The banks of one param group that share dtype and device: one flat buffer per collective."""

    def __init__(self, banks: list[_Bank]):
        self.banks = banks
        off = 0
        for b in banks:
            b.offset, off = off, off + b.numel
        self.numel = off
        self.dtype, self.device = banks[0].params[0].dtype, banks[0].params[0].device
        self.reduced: Tensor | None = None  # sharded mode: this rank's averaged gradients, flat [numel]
        self.pending = None  # the reduce-scatter's async handle


class Muon(torch.optim.Optimizer):
    """Muon optimizer for 2-D parameters, batched per bank of same-shape matrices and sharded across ranks (module
    docstring).

    Args: ``params`` (2-D tensors), ``lr``, ``momentum`` (mu), ``backend_steps`` (NS iterations), ``nesterov``,
    ``weight_decay`` (decoupled, applied as ``W *= 1 - lr*wd`` before the update), ``row_norm`` (MuonEq-R),
    ``coeffs`` (``ns5`` | ``polar_express``), ``banked`` (the parameter-bank records' arithmetic, module docstring;
    ``MUON_BANKED``), ``sharded`` (gradients arrive un-averaged and are reduce-scattered here; ``MUON_SHARDED``),
    ``compile_ns`` (``torch.compile`` the batched Newton–Schulz). ``ns_dtype`` is the Newton-Schulz compute dtype
    (bf16 by default, as in the records). Raises ``ValueError`` for a parameter that is not 2-D.

    On one process each bank is orthogonalised in one batched call. With several ranks each rank's slices of every
    bank (a few matrices each: 3, 3, 2, 2 of the 11-layer baseline's 22, 22, 11, 11 on 8 GPUs) go through ONE call:
    tall matrices transposed, all zero-padded to the largest shape. The polar factor of a zero-padded matrix is the
    zero-padded polar factor (every iterate keeps the zero rows and columns), so only the order of float sums
    changes; at these sizes a GPU's Newton–Schulz is bound by kernel launches, not flops (``golf bench muon``).

    State: the momentum of this rank's slice of each bank, ``[hi - lo, rows, cols]`` (bf16 with ``banked``, else the
    gradient's dtype), kept under the bank's first parameter as ``state[p]["momentum_bank"]``; :meth:`momentum_of`
    returns one matrix's buffer.
    """

    def __init__(self, params, lr: float, momentum: float, backend_steps: int = 5, nesterov: bool = True,
                 ns_dtype: torch.dtype = torch.bfloat16, weight_decay: float = 0.0, row_norm: bool = False,
                 coeffs: str = "ns5", banked: bool = False, sharded: bool = False, compile_ns: bool = False):
        ns_coefficients(coeffs, 1)
        super().__init__(params, dict(lr=lr, momentum=momentum, backend_steps=backend_steps, nesterov=nesterov,
                                      weight_decay=weight_decay, row_norm=row_norm, coeffs=coeffs))
        self.ns_dtype = ns_dtype
        self.banked = banked
        self.sharded = sharded
        self.compile_ns = compile_ns
        self._ns = None
        self._lanes: list[list[_Lane]] | None = None
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon only handles 2-D parameters, got shape {tuple(p.shape)}")

    # ---- layout ------------------------------------------------------------------------------------------------
    @staticmethod
    def _world() -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def lanes(self) -> list[list[_Lane]]:
        """Per param group, its lanes (banks sharing dtype and device), each bank's matrices in parameter order."""
        if self._lanes is None:
            rank, world = self._world()
            self._lanes = []
            for group in self.param_groups:
                by_shape: dict[tuple, list[Tensor]] = {}
                for p in group["params"]:
                    by_shape.setdefault((tuple(p.shape), p.dtype, p.device), []).append(p)
                by_lane: dict[tuple, list[_Bank]] = {}
                for (shape, dtype, device), ps in by_shape.items():
                    by_lane.setdefault((dtype, device), []).append(_Bank(ps, rank, world))
                self._lanes.append([_Lane(banks) for banks in by_lane.values()])
        return self._lanes

    def banks(self) -> list[list[_Bank]]:
        """Per param group, its banks (same shape, dtype and device; in order of first appearance)."""
        return [[b for lane in lanes for b in lane.banks] for lanes in self.lanes()]

    def _ns_fn(self):
        if self._ns is None:
            self._ns = newton_schulz_batched
            if self.compile_ns:
                import torch._dynamo.config as dynamo_config

                n_shapes = sum(len(b) for b in self.banks()) + 1  # one graph per batch shape, none evicted
                dynamo_config.cache_size_limit = max(dynamo_config.cache_size_limit, n_shapes + 4)
                self._ns = torch.compile(newton_schulz_batched, dynamic=False, fullgraph=True)
        return self._ns

    def momentum_of(self, p: Tensor) -> Tensor | None:
        """The momentum buffer of matrix ``p`` ``[rows, cols]`` on this rank, or None when another rank owns it (or
        no step was taken yet). Raises ``KeyError`` for a tensor that is not one of this optimizer's."""
        for banks in self.banks():
            for b in banks:
                for i, q in enumerate(b.params):
                    if q is p:
                        buf = self.state[b.params[0]].get("momentum_bank")
                        return None if buf is None or not b.lo <= i < b.hi else buf[i - b.lo]
        raise KeyError("momentum_of: not a parameter of this optimizer")

    # ---- gradients ---------------------------------------------------------------------------------------------
    @staticmethod
    def _stack(b: _Bank, params: list[Tensor], rows: int) -> Tensor:
        """``[rows, r, c]``: the gradients of ``params`` (a missing one as zeros), then zero slots up to ``rows``."""
        grads = [p.grad if p.grad is not None else b.zeros() for p in params]
        return torch.stack(grads + [b.zeros()] * (rows - len(grads)))

    @torch.no_grad()
    def reduce_grads(self) -> None:
        """Sharded mode: launch one reduce-scatter (AVG; asynchronous on NCCL) per lane over the local gradients of
        every bank (rank ``r``'s part of the flat buffer holds its slice of each bank), so each rank receives the
        averaged gradients of its own slices. A no-op without ``sharded``, on one process, or when already launched
        this step."""
        rank, world = self._world()
        if not self.sharded or world == 1:
            return
        for lanes in self.lanes():
            for lane in lanes:
                if lane.reduced is not None or lane.pending is not None:
                    continue
                full = torch.cat([self._stack(b, b.params, b.n_pad).view(world, -1) for b in lane.banks], dim=1)
                lane.reduced = torch.empty(lane.numel, dtype=full.dtype, device=full.device)
                # asynchronous on NCCL (overlaps the other lanes and the Adam steps); gloo runs it in place (its
                # async work threads have aborted the process at teardown)
                lane.pending = _REDUCE_SCATTER(lane.reduced, full.reshape(-1), op=dist.ReduceOp.AVG,
                                               async_op=dist.get_backend() == "nccl")

    def _wait(self, lane: _Lane) -> None:
        if lane.pending is not None:
            lane.pending.wait()
            lane.pending = None

    def _own_grads(self, lane: _Lane, b: _Bank) -> Tensor:
        """The averaged gradients of this rank's slice ``[hi - lo, rows, cols]``."""
        k = b.hi - b.lo
        if lane.reduced is not None:
            self._wait(lane)
            return b.slice_of(lane.reduced)[:k]
        return self._stack(b, b.params[b.lo:b.hi], k) if k else b.zeros()[None][:0]

    @torch.no_grad()
    def grad_sq_norm(self) -> Tensor:
        """Sharded mode: the squared L2 norm (fp32 scalar) of every Muon gradient after averaging, summed over all
        ranks' slices (one all-reduce) — what ``clip_grad_norm_`` would see under DDP. Launches
        :meth:`reduce_grads` if needed. Raises ``RuntimeError`` without ``sharded``."""
        if not self.sharded:
            raise RuntimeError("grad_sq_norm is for sharded Muon; without it the gradients are on the parameters")
        self.reduce_grads()
        rank, world = self._world()
        parts = []
        for lanes in self.lanes():
            for lane in lanes:
                if lane.reduced is None:  # one process: the lane's gradients are on the parameters
                    parts += [self._own_grads(lane, b).float().pow(2).sum() for b in lane.banks]
                else:
                    self._wait(lane)
                    parts.append(lane.reduced.float().pow(2).sum())
        total = torch.stack(parts).sum() if parts else torch.zeros(())
        if world > 1:
            dist.all_reduce(total)
        return total

    @torch.no_grad()
    def scale_grads(self, factor: Tensor | float) -> None:
        """Sharded mode: multiply every averaged gradient (this rank's slices) by ``factor`` (gradient clipping)."""
        for lanes in self.lanes():
            for lane in lanes:
                if lane.reduced is None:
                    torch._foreach_mul_([p.grad for b in lane.banks for p in b.params if p.grad is not None], factor)
                else:
                    self._wait(lane)
                    lane.reduced.mul_(factor)

    # ---- the step ----------------------------------------------------------------------------------------------
    def _momentum(self, group: dict, b: _Bank, g: Tensor) -> Tensor:
        """Momentum, Nesterov and MuonEq-R for this rank's slice ``g`` ``[k, rows, cols]`` of bank ``b``."""
        mu = group["momentum"]
        g = g.bfloat16() if self.banked else g
        state = self.state[b.params[0]]
        buf = state.get("momentum_bank")
        if buf is None or buf.shape != g.shape or buf.dtype != g.dtype:
            buf = state["momentum_bank"] = torch.zeros_like(g)
        buf.mul_(mu).add_(g)
        u = g.add(buf, alpha=mu) if group["nesterov"] else buf
        if group["row_norm"] and self.banked:
            u = u / u.float().norm(dim=-1, keepdim=True).clamp_min(1e-7).to(u.dtype)
        elif group["row_norm"]:
            u = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-7)
        return u

    def _orthogonalise(self, us: list[Tensor], banks: list[_Bank], coeffs, merged: bool) -> list[Tensor]:
        """Newton–Schulz of each bank's ``u`` ``[k, rows, cols]``: one call per bank, or (``merged``) one call over
        all of them, tall ones transposed and all zero-padded to the largest oriented shape."""
        ns = self._ns_fn()
        if not merged:
            return [ns(u, coeffs, 1e-7, self.ns_dtype, self.banked) if u.size(0) else u.to(self.ns_dtype)
                    for u in us]
        oriented = [u.mT if b.tall else u for u, b in zip(us, banks)]
        rows = max(u.size(-2) for u in oriented)
        cols = max(u.size(-1) for u in oriented)
        batch = torch.cat([F.pad(u, (0, cols - u.size(-1), 0, rows - u.size(-2))) for u in oriented])
        out = ns(batch, coeffs, 1e-7, self.ns_dtype, self.banked) if batch.size(0) else batch.to(self.ns_dtype)
        res, i = [], 0
        for u, b in zip(oriented, banks):
            o = out[i:i + u.size(0), :u.size(-2), :u.size(-1)]
            res.append(o.mT if b.tall else o)
            i += u.size(0)
        return res

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        rank, world = self._world()
        self.reduce_grads()
        for group, lanes in zip(self.param_groups, self.lanes()):
            lr, wd = group["lr"], group["weight_decay"]
            coeffs = tuple(ns_coefficients(group["coeffs"], group["backend_steps"]))
            for lane in lanes:
                us = [self._momentum(group, b, self._own_grads(lane, b)) for b in lane.banks]
                lane.reduced = None
                os_ = self._orthogonalise(us, lane.banks, coeffs, merged=world > 1)
                if not self.banked:
                    os_ = [o * b.scale for o, b in zip(os_, lane.banks)]
                if world > 1:  # every rank's slices → every rank: one all-gather of the lane
                    send = torch.cat([F.pad(o, (0, 0, 0, 0, 0, b.shard - o.size(0))).reshape(-1)
                                      for o, b in zip(os_, lane.banks)])
                    recv = torch.empty(world * lane.numel, dtype=send.dtype, device=send.device)
                    _ALL_GATHER(recv, send)
                    recv = recv.view(world, lane.numel).to(lane.dtype)
                    updates = [recv[:, b.offset:b.offset + b.numel].reshape(b.n_pad, *b.shape)[:b.n]
                               for b in lane.banks]
                else:
                    updates = [o.to(lane.dtype) for o in os_]
                params = [p for b in lane.banks for p in b.params]
                if wd:
                    torch._foreach_mul_(params, 1.0 - lr * wd)
                by_step: dict[float, tuple[list, list]] = {}
                for b, u in zip(lane.banks, updates):
                    ps, us_ = by_step.setdefault(-lr * b.scale if self.banked else -lr, ([], []))
                    ps += b.params
                    us_ += list(u.unbind(0))
                for step, (ps, us_) in by_step.items():
                    torch._foreach_add_(ps, us_, alpha=step)
        return loss
