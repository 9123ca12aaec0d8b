"""Transformer block pieces: attention (with every record option), MLP, and the block's residual arithmetic.

A :class:`Block` owns its per-layer scalars (``resid_mix``, ``attn_scale``, ``mlp_scale``, LN-scale factor) and,
unless it shares a core (#461 ``UNIQUE_LAYERS``), its ``attn``/``mlp`` weights. The GPT decides which block's core
and which MLP run at each virtual layer; the arithmetic of a sublayer lives in :meth:`Block.attn_branch` /
:meth:`Block.mlp_branch` so the sequential, GPT-J and two-lane forms share one implementation of every gate.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golflib.settings.model import ModelConfig
from golflib.model.attention import causal_attention, exclusive_self_attention
from golflib.model.layers import CastedLinear, Rotary, apply_rotary, rms_norm

# ``adapter(site, layer, x, out) -> out'`` for site in {q, k, v, o, mlp, head}; see golflib.model.gpt.
Adapter = Callable[[str, int, Tensor, Tensor], Tensor]


class AttentionGate(nn.Module):
    """Per-head multiplicative gate on the attention output, before ``W_o`` (SPEC §3.C12).

    ``headwise`` σ(W x + b), W ``[H, d]`` = 0, b = 4 (#549 code); ``g1`` σ(W x), W ~ N(0, std²) (arXiv 2505.06708,
    #1736); ``output`` 2σ(W x[:w]), W = 0 → exactly 1 (#1667); ``sparse`` σ(κ W x[:w]), W = 0 → 0.5 (#1787; κ = 0.5
    in #1855). ``x`` is the (normed) attention input ``[B, T, d]``; returns ``[B, T, H, 1]``.
    """

    def __init__(self, kind: str, dim: int, heads: int, window: int, init_std: float, scale: float):
        super().__init__()
        self.kind, self.window, self.scale = kind, window, scale
        in_dim = dim if kind in ("headwise", "g1") else window
        self.attn_gate_w = nn.Parameter(torch.zeros(heads, in_dim))
        if kind == "g1":
            nn.init.normal_(self.attn_gate_w, std=init_std)
        if kind == "headwise":
            self.attn_gate_b = nn.Parameter(torch.full((heads,), 4.0))

    def forward(self, x: Tensor) -> Tensor:
        w = self.attn_gate_w.to(x.dtype)
        if self.kind == "headwise":
            z = x @ w.T + self.attn_gate_b.to(x.dtype)
        elif self.kind == "g1":
            z = x @ w.T
        else:
            z = x[..., :self.window] @ w.T
        if self.kind == "output":
            g = 2.0 * torch.sigmoid(z)
        elif self.kind == "sparse":
            g = torch.sigmoid(self.scale * z)
        else:
            g = torch.sigmoid(z)
        return g[..., None]


class CausalSelfAttention(nn.Module):
    """GQA attention: QK-RMSNorm, (partial, NTK-rescalable) RoPE, per-head q gain, optional value embedding,
    value residual, XSA and output gate. Input/output ``[B, T, model_dim]``."""

    def __init__(self, cfg: ModelConfig, xsa: bool):
        super().__init__()
        dim, hd = cfg.model_dim, cfg.head_dim
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, hd
        kv_dim = cfg.num_kv_heads * hd
        self.c_q = CastedLinear(dim, dim, bias=False)
        self.c_k = CastedLinear(dim, kv_dim, bias=False)
        self.c_v = CastedLinear(dim, kv_dim, bias=False)
        self.proj = CastedLinear(dim, dim, bias=False)
        self.proj._zero_init = cfg.proj_init == "zero"
        self.proj._scaled_init = cfg.proj_init == "scaled"
        self.q_gain = nn.Parameter(torch.full((cfg.num_heads,), cfg.qk_gain_init, dtype=torch.float32))
        self.rotary = Rotary(cfg.rope_dims or hd, base=cfg.rope_base, train_len=cfg.rope_train_seq_len)
        self.xsa = xsa
        self.gate = None if cfg.attn_gate == "none" else AttentionGate(
            cfg.attn_gate, dim, cfg.num_heads, cfg.gate_window, cfg.gated_attn_init_std, cfg.sparse_attn_gate_scale)
        self.vr_lambda = nn.Parameter(torch.full((2,), 0.5)) if cfg.value_residual else None

    def forward(self, h: Tensor, adapter: Adapter | None = None, layer: int = 0, ve: Tensor | None = None,
                v0: Tensor | None = None, doc_ids: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Returns ``(output [B, T, d], raw values [B, T, kv_dim])`` — the raw values of the first virtual layer are
        the ``v0`` of the value residual."""
        b, t, d = h.shape
        q, k, v = self.c_q(h), self.c_k(h), self.c_v(h)
        if adapter is not None:
            q, k, v = adapter("q", layer, h, q), adapter("k", layer, h, k), adapter("v", layer, h, v)
        if ve is not None:
            v = v + ve.to(v.dtype)
        v_raw = v
        if self.vr_lambda is not None and v0 is not None:
            lam = self.vr_lambda.to(v.dtype)
            v = lam[0] * v0 + lam[1] * v
        q = q.view(b, t, self.num_heads, self.head_dim)
        k = k.view(b, t, self.num_kv_heads, self.head_dim)
        v = v.view(b, t, self.num_kv_heads, self.head_dim)
        q, k = rms_norm(q), rms_norm(k)
        cos, sin = self.rotary(t, h.device, q.dtype)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        q = q * self.q_gain.to(q.dtype)[None, None, :, None]
        y = causal_attention(q, k, v, doc_ids)
        if self.xsa:
            y = exclusive_self_attention(y, v)
        if self.gate is not None:
            y = y * self.gate(h)
        y = y.reshape(b, t, d)
        out = self.proj(y)
        return (out if adapter is None else adapter("o", layer, h, out)), v_raw


class MLP(nn.Module):
    """``proj(act(fc(x)))`` with ``act`` = relu(x)² or leaky_relu(x, slope)² (#493/#549); hidden
    ``int(mlp_mult * model_dim)``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = CastedLinear(cfg.model_dim, cfg.mlp_hidden, bias=False)
        self.proj = CastedLinear(cfg.mlp_hidden, cfg.model_dim, bias=False)
        self.proj._zero_init = cfg.proj_init == "zero"
        self.proj._scaled_init = cfg.proj_init == "scaled"
        self.slope = cfg.leaky_relu_slope if cfg.mlp_activation == "leaky_relu_sq" else 0.0

    def forward(self, x: Tensor) -> Tensor:
        z = self.fc(x)
        z = F.leaky_relu(z, self.slope) if self.slope else torch.relu(z)
        return self.proj(z.square())


class Block(nn.Module):
    """Per-layer scalars plus (unless ``has_core=False``) the attention/MLP weights; ``index`` is the physical (or
    #461 logical) layer index used by LN scale, XSA and VE decisions. ``has_attn=False`` (``DISABLE_LAYER0_ATTN``,
    #1204) allocates no attention weights and no ``attn_scale``: the attention branch adds nothing."""

    def __init__(self, cfg: ModelConfig, index: int, has_core: bool = True, xsa: bool = False,
                 has_attn: bool = True):
        super().__init__()
        dim = cfg.model_dim
        self.index = index
        self.ln_factor = 1.0 / math.sqrt(index + 1) if cfg.ln_scale else 1.0
        if has_core:
            self.attn = CausalSelfAttention(cfg, xsa) if has_attn else None  # None: MLP-only (#1204 layer 0)
            self.mlp = MLP(cfg)
        self.attn_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32)) if has_attn else None
        self.mlp_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))).float())

    def norm(self, x: Tensor) -> Tensor:
        h = rms_norm(x)
        return h * self.ln_factor if self.ln_factor != 1.0 else h

    def mix(self, x: Tensor, x0: Tensor) -> Tensor:
        m = self.resid_mix.to(x.dtype)
        return m[0] * x + m[1] * x0

    def attn_branch(self, x_in: Tensor, attn: CausalSelfAttention, adapter: Adapter | None, layer: int,
                    ve: Tensor | None, v0: Tensor | None, doc_ids: Tensor | None) -> tuple[Tensor, Tensor]:
        """``attn_scale ⊙ Attn(norm(x_in))`` and the raw values; ``(0, None)`` for a block without attention (so
        the first layer *with* attention supplies the value residual's ``v0``)."""
        if attn is None:
            return torch.zeros_like(x_in), None
        a, v = attn(self.norm(x_in), adapter, layer, ve, v0, doc_ids)
        return self.attn_scale.to(a.dtype) * a, v

    def mlp_branch(self, x_in: Tensor, mlp: MLP, adapter: Adapter | None, layer: int) -> Tensor:
        """``mlp_scale ⊙ MLP(norm(x_in))`` (the adapter sees the MLP input and output)."""
        h = self.norm(x_in)
        m = mlp(h)
        if adapter is not None:
            m = adapter("mlp", layer, h, m)
        return self.mlp_scale.to(m.dtype) * m

    def sequential(self, x: Tensor, x0: Tensor, attn, mlp, adapter, layer, ve, v0, doc_ids) -> tuple[Tensor, Tensor]:
        """Baseline block: ``x = mix(x, x0); x += attn_branch(x); x += mlp_branch(x)``."""
        x = self.mix(x, x0)
        a, v = self.attn_branch(x, attn, adapter, layer, ve, v0, doc_ids)
        x = x + a
        return x + self.mlp_branch(x, mlp, adapter, layer), v

    def gptj(self, x: Tensor, x0: Tensor, attn, mlp, adapter, layer, ve, v0, doc_ids) -> tuple[Tensor, Tensor]:
        """GPT-J style parallel block (#1412): both sublayers read ``mix(x, x0)``; ``x = mix + a + m``."""
        x = self.mix(x, x0)
        a, v = self.attn_branch(x, attn, adapter, layer, ve, v0, doc_ids)
        return x + a + self.mlp_branch(x, mlp, adapter, layer), v
