"""FlashAttention inside a ``torch.compile(fullgraph=True)`` graph, whatever the build (issue 14; SPEC §3.D6).

FlashAttention 3 builds for torch ≥ 2.4 and FlashAttention 2 from 2.7 register their kernels as torch custom ops, so
dynamo traces a call to ``flash_attn_func`` / ``flash_attn_varlen_func`` into the graph. Older builds call a pybind
extension that dynamo cannot trace: the graph breaks, which ``fullgraph=True`` turns into an error (and a graph
without ``fullgraph`` would silently split around every attention call).

:func:`choose_flash_op` probes the installed module once (a ``fullgraph`` trace of a small call) and, when it
breaks the graph, routes attention through golflib's own custom ops ``golflib::flash_attn`` and
``golflib::flash_attn_varlen``: opaque to dynamo (one node in the graph), with a fake (meta) implementation for
tracing and an autograd formula that recomputes the attention forward inside the backward and differentiates it —
the module's own backward kernels, one extra forward per backward (logged). ``FLASH_ATTN_OP`` chooses: ``auto``
(probe), ``native`` (call the module directly; an error under compile if it breaks the graph), ``custom_op``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from golflib.model import attention as att

FLASH_ATTN_OPS = ("auto", "native", "custom_op")
# The ops' schemas are spelled out: a bundled train_gpt.py is minified without annotations, which custom_op would
# otherwise read the schema from.
# The dispatcher's thread-local key sets of plain eager code, taken at import. A custom op's implementation runs
# below autograd (autograd keys excluded); the backward ops restore these sets to differentiate the kernel.
_EAGER_KEYS = (torch._C._dispatch_tls_local_include_set(), torch._C._dispatch_tls_local_exclude_set())


def _recompute_grads(fn, grad: Tensor, inputs: tuple[Tensor, ...], *rest) -> tuple[Tensor, ...]:
    """Gradients of ``fn(*inputs, *rest)`` (its first output) w.r.t. ``inputs`` for ``grad``, by running ``fn``
    again with autograd on — inside a custom op, so with the eager dispatch key sets restored."""
    with torch._C._ForceDispatchKeyGuard(*_EAGER_KEYS), torch.enable_grad():
        leaves = tuple(t.detach().requires_grad_(True) for t in inputs)
        out = _first(fn(*leaves, *rest))
        return torch.autograd.grad(out, leaves, grad)


def _first(out):
    return out[0] if isinstance(out, tuple) else out


@torch.library.custom_op("golflib::flash_attn", mutates_args=(), schema="(Tensor q, Tensor k, Tensor v) -> Tensor")
def flash_attn(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Causal FlashAttention ``q`` ``[B, T, H, D]``, ``k, v`` ``[B, T, H_kv, D]`` (half dtype) → ``[B, T, H, D]``,
    computed by the installed module's ``flash_attn_func``."""
    with torch.no_grad():
        return _first(att.FLASH_FN(q, k, v, causal=True))


@flash_attn.register_fake
def _(q, k, v):
    return torch.empty_like(q)


@torch.library.custom_op("golflib::flash_attn_backward", mutates_args=(),
                         schema="(Tensor grad, Tensor q, Tensor k, Tensor v) -> (Tensor, Tensor, Tensor)")
def flash_attn_backward(grad: Tensor, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(dq, dk, dv)`` of :func:`flash_attn` at ``(q, k, v)`` for the output gradient ``grad``: the forward is
    recomputed with autograd on and differentiated by the module's own backward."""
    dq, dk, dv = _recompute_grads(lambda a, b, c: att.FLASH_FN(a, b, c, causal=True), grad, (q, k, v))
    return dq, dk, dv


@flash_attn_backward.register_fake
def _(grad, q, k, v):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:3])


def _backward(ctx, grad):
    q, k, v = ctx.saved_tensors
    return flash_attn_backward(grad.contiguous(), q, k, v)


flash_attn.register_autograd(_backward, setup_context=_setup)


@torch.library.custom_op("golflib::flash_attn_varlen", mutates_args=(),
                         schema="(Tensor q, Tensor k, Tensor v, Tensor cu_seqlens, SymInt max_seqlen) -> Tensor")
def flash_attn_varlen(q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, max_seqlen: int) -> Tensor:
    """Causal varlen FlashAttention on packed ``q`` ``[N, H, D]``, ``k, v`` ``[N, H_kv, D]`` with segment
    boundaries ``cu_seqlens`` (int32 ``[S + 1]`` or padded) → ``[N, H, D]``, by the module's
    ``flash_attn_varlen_func``."""
    with torch.no_grad():
        return _first(att.FLASH_VARLEN_FN(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, causal=True))


@flash_attn_varlen.register_fake
def _(q, k, v, cu_seqlens, max_seqlen):
    return torch.empty_like(q)


@torch.library.custom_op("golflib::flash_attn_varlen_backward", mutates_args=(),
                         schema="(Tensor grad, Tensor q, Tensor k, Tensor v, Tensor cu_seqlens, SymInt max_seqlen) "
                                "-> (Tensor, Tensor, Tensor)")
def flash_attn_varlen_backward(grad: Tensor, q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor,
                               max_seqlen: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(dq, dk, dv)`` of :func:`flash_attn_varlen` (the forward recomputed and differentiated)."""
    dq, dk, dv = _recompute_grads(lambda a, b, c: att.FLASH_VARLEN_FN(a, b, c, cu_seqlens, cu_seqlens, max_seqlen,
                                                                      max_seqlen, causal=True), grad, (q, k, v))
    return dq, dk, dv


@flash_attn_varlen_backward.register_fake
def _(grad, q, k, v, cu_seqlens, max_seqlen):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup_varlen(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:4])
    ctx.max_seqlen = inputs[4]


def _backward_varlen(ctx, grad):
    q, k, v, cu = ctx.saved_tensors
    return (*flash_attn_varlen_backward(grad.contiguous(), q, k, v, cu, ctx.max_seqlen), None, None)


flash_attn_varlen.register_autograd(_backward_varlen, setup_context=_setup_varlen)


def traces_whole(fn, *args) -> str:
    """``""`` when dynamo captures ``fn(*args)`` as one graph (``fullgraph=True``, eager backend: nothing is
    compiled, the call runs once), else why not (the exception's first line)."""
    import torch._dynamo

    torch._dynamo.reset()
    try:
        torch.compile(fn, fullgraph=True, backend="eager")(*args)
        return ""
    except Exception as e:  # noqa: BLE001 - dynamo's Unsupported, or the build's own error under tracing
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    finally:
        torch._dynamo.reset()


def choose_flash_op(mode: str, device: torch.device, dtype: torch.dtype = torch.bfloat16) -> str:
    """Decide how compiled graphs call FlashAttention and set it for :mod:`golflib.model.attention`; returns a log
    line ``flash_attention_op:<native|custom_op> (...)``.

    ``mode`` (``FLASH_ATTN_OP``): ``auto`` probes a dense and a varlen call of the installed module on ``device``
    (8 tokens, 2 heads, head dim 64, in ``dtype``) under a ``fullgraph`` trace (:func:`traces_whole`) and picks
    ``custom_op`` when either breaks the graph; ``native``
    / ``custom_op`` force it. Without a FlashAttention module nothing is set (``none``). Raises ``ValueError`` for an
    unknown mode."""
    if mode not in FLASH_ATTN_OPS:
        raise ValueError(f"FLASH_ATTN_OP={mode!r}: expected one of {', '.join(FLASH_ATTN_OPS)}")
    if att.FLASH_FN is None:
        att.FLASH_OP = "native"
        return "flash_attention_op:none (no FlashAttention module)"
    why = "forced by FLASH_ATTN_OP"
    if mode == "auto":
        q = torch.randn(1, 8, 2, 64, device=device, dtype=dtype)
        cu = torch.tensor([0, 3, 8], dtype=torch.int32, device=device)
        dense = traces_whole(lambda a, b, c: att.FLASH_FN(a, b, c, causal=True), q, q, q)
        varlen = ""
        if att.FLASH_VARLEN_FN is not None:
            varlen = traces_whole(lambda a, b, c, s: att.FLASH_VARLEN_FN(a, b, c, s, s, 8, 8, causal=True),
                                  q[0], q[0], q[0], cu)
        mode = "custom_op" if dense or varlen else "native"
        why = (f"probe: dense {'breaks the graph' if dense else 'traces'}, varlen "
               f"{'breaks the graph' if varlen else 'traces'}" + (f"; {dense or varlen}" if mode != "native" else ""))
    att.FLASH_OP = mode
    cost = " — backward recomputes the attention forward" if mode == "custom_op" else ""
    return f"flash_attention_op:{mode} ({why}){cost}"
