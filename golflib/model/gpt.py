"""The baseline GPT of the challenge (SPEC §2.2-2.3), configured by :class:`golflib.config.ModelConfig`.

Forward pass: ``x = rms_norm(Embedding(ids))``, ``x0 = x``; a U-Net stack of blocks (first ``L//2`` push their
outputs, the rest pop them LIFO with learned per-channel skip weights); each block mixes ``x`` with ``x0``
(``resid_mix``), then ``x += attn_scale * Attn(rms_norm(x))`` and ``x += mlp_scale * MLP(rms_norm(x))``. Attention
uses QK-RMSNorm, RoPE, a per-head ``q_gain`` and causal GQA. Output: ``rms_norm`` → tied (or untied) head →
soft-cap ``c*tanh(z/c)`` → fp32 cross-entropy.

Parameter names match the official ``train_gpt.py`` so state dicts are interchangeable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from typing import Callable

from golflib.config import ModelConfig
from golflib.model.attention import causal_attention
from golflib.model.layers import CastedLinear, RMSNorm, Rotary, apply_rotary, rms_norm

# An adapter (e.g. test-time LoRA) sees every projection of every forward path:
# ``adapter(site, layer, x, out) -> out'`` with site in {"q", "k", "v", "o", "mlp", "head"}, ``layer`` the virtual
# layer index (-1 for the head), ``x`` the projection's input and ``out`` its output. Threading it through the one
# forward pass (instead of re-implementing blocks for TTT) keeps every gate and mask identical (SPEC §7.2 traps 5-6).
Adapter = Callable[[str, int, Tensor, Tensor], Tensor]


class CausalSelfAttention(nn.Module):
    """GQA self-attention with QK-norm, RoPE and per-head q gain. Input/output ``[B, T, model_dim]``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dim, hd = cfg.model_dim, cfg.head_dim
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, hd
        kv_dim = cfg.num_kv_heads * hd
        self.c_q = CastedLinear(dim, dim, bias=False)
        self.c_k = CastedLinear(dim, kv_dim, bias=False)
        self.c_v = CastedLinear(dim, kv_dim, bias=False)
        self.proj = CastedLinear(dim, dim, bias=False)
        self.proj._zero_init = True
        self.q_gain = nn.Parameter(torch.full((cfg.num_heads,), cfg.qk_gain_init, dtype=torch.float32))
        self.rotary = Rotary(hd, base=cfg.rope_base)

    def forward(self, x: Tensor, adapter: Adapter | None = None, layer: int = 0) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.c_q(x), self.c_k(x), self.c_v(x)
        if adapter is not None:
            q, k, v = adapter("q", layer, x, q), adapter("k", layer, x, k), adapter("v", layer, x, v)
        q = q.view(b, t, self.num_heads, self.head_dim)
        k = k.view(b, t, self.num_kv_heads, self.head_dim)
        v = v.view(b, t, self.num_kv_heads, self.head_dim)
        q, k = rms_norm(q), rms_norm(k)
        cos, sin = self.rotary(t, x.device, q.dtype)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        q = q * self.q_gain.to(q.dtype)[None, None, :, None]
        y = causal_attention(q, k, v).reshape(b, t, d)
        out = self.proj(y)
        return out if adapter is None else adapter("o", layer, y, out)


class MLP(nn.Module):
    """``proj(relu(fc(x))^2)``; hidden width ``int(mlp_mult * model_dim)``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = CastedLinear(cfg.model_dim, cfg.mlp_hidden, bias=False)
        self.proj = CastedLinear(cfg.mlp_hidden, cfg.model_dim, bias=False)
        self.proj._zero_init = True

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(torch.relu(self.fc(x)).square())


class Block(nn.Module):
    """One transformer block with ``resid_mix`` re-reading the embedding ``x0``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dim = cfg.model_dim
        self.attn_norm = RMSNorm()
        self.mlp_norm = RMSNorm()
        self.attn = CausalSelfAttention(cfg)
        self.mlp = MLP(cfg)
        self.attn_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.mlp_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))).float())

    def forward(self, x: Tensor, x0: Tensor, adapter: Adapter | None = None, layer: int = 0) -> Tensor:
        mix = self.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0
        x = x + self.attn_scale.to(x.dtype) * self.attn(self.attn_norm(x), adapter, layer)
        h = self.mlp_norm(x)
        m = self.mlp(h)
        if adapter is not None:
            m = adapter("mlp", layer, h, m)
        return x + self.mlp_scale.to(x.dtype) * m


class GPT(nn.Module):
    """The challenge GPT. Token ids are int64 ``[B, T]``; see :meth:`forward` for outputs."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.model_dim)
        self.num_encoder_layers = cfg.num_layers // 2
        self.num_decoder_layers = cfg.num_layers - self.num_encoder_layers
        n_skip = min(self.num_encoder_layers, self.num_decoder_layers)
        self.skip_weights = nn.Parameter(torch.ones(n_skip, cfg.model_dim, dtype=torch.float32))
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.num_layers)])
        self.final_norm = RMSNorm()
        self.lm_head = None if cfg.tie_embeddings else CastedLinear(cfg.model_dim, cfg.vocab_size, bias=False)
        if self.lm_head is not None:
            self.lm_head._zero_init = True
        self._init_weights()

    def _init_weights(self) -> None:
        if self.cfg.tie_embeddings:
            nn.init.normal_(self.tok_emb.weight, mean=0.0, std=self.cfg.tied_embed_init_std)
        for m in self.modules():
            if isinstance(m, nn.Linear) and getattr(m, "_zero_init", False):
                nn.init.zeros_(m.weight)

    # ---- forward paths ----------------------------------------------------------------------------------------
    def virtual_layers(self) -> list[int]:
        """Physical block index of each virtual layer, in execution order (encoder half first)."""
        return list(range(len(self.blocks)))

    def hidden(self, input_ids: Tensor, adapter: Adapter | None = None) -> Tensor:
        """Final-norm output ``[B, T, model_dim]`` (the input of the logit projection)."""
        x = rms_norm(self.tok_emb(input_ids))
        x0 = x
        skips: list[Tensor] = []
        for i in range(self.num_encoder_layers):
            x = self.blocks[i](x, x0, adapter, i)
            skips.append(x)
        for i in range(self.num_decoder_layers):
            if skips:
                x = x + self.skip_weights[i].to(x.dtype) * skips.pop()
            j = self.num_encoder_layers + i
            x = self.blocks[j](x, x0, adapter, j)
        return self.final_norm(x)

    def logits_from_hidden(self, h: Tensor, adapter: Adapter | None = None) -> Tensor:
        """Soft-capped fp32 logits ``[..., vocab]`` from final hidden states."""
        w = self.tok_emb.weight if self.lm_head is None else self.lm_head.weight
        z = F.linear(h, w.to(h.dtype))
        if adapter is not None:
            z = adapter("head", -1, h, z)
        c = self.cfg.logit_softcap
        return c * torch.tanh(z.float() / c)

    def logits(self, input_ids: Tensor, adapter: Adapter | None = None) -> Tensor:
        """Soft-capped fp32 logits ``[B, T, vocab]``."""
        return self.logits_from_hidden(self.hidden(input_ids, adapter), adapter)

    def token_nll(self, input_ids: Tensor, target_ids: Tensor, adapter: Adapter | None = None) -> Tensor:
        """Per-target NLL in nats, fp32 ``[B, T]``: ``-log softmax(logits)[target]``."""
        logits = self.logits(input_ids, adapter)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), target_ids.reshape(-1),
                               reduction="none").view_as(target_ids)

    def forward(self, input_ids: Tensor, target_ids: Tensor | None = None, adapter: Adapter | None = None) -> Tensor:
        """Mean cross-entropy (nats/token, fp32 scalar) if ``target_ids`` is given, else logits ``[B, T, V]``."""
        logits = self.logits(input_ids, adapter)
        if target_ids is None:
            return logits
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), target_ids.reshape(-1), reduction="mean")


def count_params(model: nn.Module) -> int:
    """Number of parameters (elements)."""
    return sum(p.numel() for p in model.parameters())


def param_groups_summary(model: GPT) -> dict[str, int]:
    """Parameter counts by role: embedding, head, blocks, skip weights."""
    out = {"embedding": model.tok_emb.weight.numel(), "blocks": sum(p.numel() for p in model.blocks.parameters()),
           "skip_weights": model.skip_weights.numel(), "head": 0 if model.lm_head is None else model.lm_head.weight.numel()}
    out["per_block"] = out["blocks"] // max(len(model.blocks), 1)
    return out
