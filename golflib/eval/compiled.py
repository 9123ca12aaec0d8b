"""Compiled scoring forwards (issue 14): every protocol's model calls go through :func:`forward_of`, which returns
the model's own method — or, once :func:`enable_compile` is on (``USE_COMPILE`` resolved true: CUDA by default),
a ``torch.compile``'d one (``fullgraph=True``; automatic dynamic shapes, since batch and window sizes vary:
tail batches, TTT chunks, LoRA document batches), cached per model object (a TTT kind's deep copy compiles its
own). #1855 compiles its eval and TTT forwards the same way.

Document-isolated calls (``doc_ids``) get their varlen boundaries here, eagerly (``nonzero`` has a data-dependent
shape): :func:`golflib.data.varlen.cu_seqlens_padded` with the row length as ``max_seqlen``, so the graph calls
the FlashAttention varlen kernel (or, on SDPA, builds its block mask) with no graph break.
"""

from __future__ import annotations

import weakref

import torch

from golflib.data.varlen import cu_seqlens_padded

_ENABLED = False
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {method: compiled callable}
METHODS = ("token_nll", "logits", "forward")


def enable_compile(flag: bool) -> None:
    """Compile the scoring forwards from now on (``True``) or call the model's methods directly (``False``)."""
    global _ENABLED
    _ENABLED = bool(flag)
    if flag:
        import torch._dynamo.config as dynamo_config

        # eval/TTT shapes vary (automatic dynamic shapes keep that to a few graphs per method and model copy)
        dynamo_config.cache_size_limit = max(dynamo_config.cache_size_limit, 64)


def compile_enabled() -> bool:
    return _ENABLED


def _with_boundaries(fn):
    def call(x, y=None, adapter=None, doc_ids=None):
        if doc_ids is None:
            return fn(x, y, adapter)
        return fn(x, y, adapter, doc_ids, cu_seqlens_padded(doc_ids), x.size(-1))
    return call


def forward_of(model, method: str):
    """``model.<method>`` (``token_nll(x, y, adapter=None, doc_ids=None)``, ``logits(x, adapter=None,
    doc_ids=None)`` or ``forward(x, y=None, adapter=None, doc_ids=None)``), compiled when :func:`enable_compile` is
    on. Raises ``ValueError`` for another method name."""
    if method not in METHODS:
        raise ValueError(f"forward_of: method must be one of {METHODS}, got {method!r}")
    if not _ENABLED:
        return getattr(model, method) if method != "forward" else model
    per_model = _CACHE.setdefault(model, {})
    if method not in per_model:
        if method == "logits":
            compiled = torch.compile(model.logits, fullgraph=True)

            def call(x, adapter=None, doc_ids=None):
                if doc_ids is None:
                    return compiled(x, adapter)
                return compiled(x, adapter, doc_ids, cu_seqlens_padded(doc_ids), x.size(-1))
            per_model[method] = call
        else:
            target = model.token_nll if method == "token_nll" else model.forward
            per_model[method] = _with_boundaries(torch.compile(target, fullgraph=True))
    return per_model[method]
