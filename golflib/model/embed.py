"""Input-side additions to the token embedding: SmearGate, BigramHash, value embeddings (SPEC §3.C3, C4, C10).

All three read only *input* tokens (``x_t`` and ``x_{t-1}``), never the target, so they are causal.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from golflib.model.layers import CastedLinear


def shift_prev(x: Tensor) -> Tensor:
    """``out[:, t] = x[:, t-1]`` with zeros at ``t = 0`` (``x``: ``[B, T, ...]``)."""
    return torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)


class SmearGate(nn.Module):
    """Mix the previous token's embedding into the current one (1-token causal lookback), optionally masked at BOS.

    With ``bos_mask`` (the #1851/#1855 fix, ``SMEAR_BOS_MASK=1``) the smear is skipped where ``x_t`` is BOS, so doc
    N's last token never leaks into doc N+1's BOS position, in every forward path; the #162 → #1019 records had no
    mask (``SMEAR_BOS_MASK=0`` reproduces them). ``e_{-1} = 0``. Each version is computed with its record's
    expression, so the records' training is reproduced bit for bit on CPU:

    * v1 (#65/#102 era): ``g = σ(p)``, p ∈ R^d init 3: ``g ⊙ e_t + (1 − g) ⊙ e_{t−1}``; applied to the embedding
      before the first RMSNorm.
    * v2 (#162 → #1019): p init 0: ``(1 − g) ⊙ e_t + g ⊙ e_{t−1}``; applied after the embedding RMSNorm.
    * v3 (#1667 → #1855): ``e_t + λ σ(w·e_t[:window]) e_{t−1}``, w (window→1) and λ zero-initialised (identity at
      init); applied to the raw embedding before RMSNorm.

    ``forward(e, ids)``: ``e`` ``[B, T, d]``, ``ids`` int64 ``[B, T]``.
    """

    def __init__(self, version: int, dim: int, window: int = 12, bos_id: int = 1, bos_mask: bool = True):
        super().__init__()
        if version not in (1, 2, 3):
            raise ValueError(f"SMEAR_GATE={version}: expected 1, 2 or 3")
        self.version, self.window, self.bos_id, self.bos_mask = version, window, bos_id, bos_mask
        if version == 3:
            self.gate_w = nn.Parameter(torch.zeros(1, window))
            self.lam = nn.Parameter(torch.zeros(()))
        else:
            self.gate = nn.Parameter(torch.full((dim,), 3.0 if version == 1 else 0.0))

    @property
    def before_norm(self) -> bool:
        """v1 and v3 act on the raw embedding, v2 on the normalised one."""
        return self.version != 2

    def forward(self, e: Tensor, ids: Tensor) -> Tensor:
        prev = shift_prev(e)
        if self.version == 3:
            g = self.lam.to(e.dtype) * torch.sigmoid(e[..., :self.window] @ self.gate_w.to(e.dtype).T)
            if self.bos_mask:
                return e + g * prev * (ids != self.bos_id).to(e.dtype)[..., None]
            return e + g * prev
        g = torch.sigmoid(self.gate.to(e.dtype))
        out = g * e + (1 - g) * prev if self.version == 1 else (1 - g) * e + g * prev
        return torch.where((ids != self.bos_id)[..., None], out, e) if self.bos_mask else out


class BigramHash(nn.Module):
    """Hashed (previous, current) input-token pair embedding, projected to ``model_dim`` (#162 concept; #287 form).

    Buckets: ``xor`` — ``(36313·cur XOR 27191·prev) mod (B−1)`` for t ≥ 1 and the reserved bucket ``B−1`` at t = 0;
    ``mul92821`` — ``(92821·prev + cur) mod B`` with prev = 0 at t = 0. Table ``[B, d_b]`` zero-initialised, projection
    ``d_b → d`` (none when ``d_b == d``, as in the records) and a learned scalar ``scale`` (init 0.05).
    ``forward(ids)`` → ``[B, T, d]``.
    """

    def __init__(self, buckets: int, dim: int, model_dim: int, hash_kind: str = "xor"):
        super().__init__()
        if hash_kind not in ("xor", "mul92821"):
            raise ValueError(f"BIGRAM_HASH={hash_kind!r}: expected xor or mul92821")
        self.buckets, self.hash_kind = buckets, hash_kind
        self.embed = nn.Embedding(buckets, dim)
        nn.init.zeros_(self.embed.weight)
        self.proj = CastedLinear(dim, model_dim, bias=False) if dim != model_dim else None
        if self.proj is not None:
            nn.init.zeros_(self.proj.weight)
        self.scale = nn.Parameter(torch.tensor(0.05))

    def bucket(self, ids: Tensor) -> Tensor:
        cur = ids.to(torch.int64)
        prev = shift_prev(cur)
        if self.hash_kind == "xor":
            b = torch.bitwise_xor(36313 * cur, 27191 * prev) % (self.buckets - 1)
            b[:, 0] = self.buckets - 1
            return b
        return (92821 * prev + cur) % self.buckets

    def forward(self, ids: Tensor) -> Tensor:
        h = self.embed(self.bucket(ids))
        if self.proj is not None:
            h = self.proj(h)
        return h * self.scale.to(h.dtype)


class ValueEmbedding(nn.Module):
    """Shared value-embedding table (#374; VE128 in #414/#549/#1019): ``scale · proj(table[ids])`` of shape
    ``[B, T, kv_dim]``, added (times a per-layer scalar) to V of the chosen layers. Table N(0, 0.01²),
    projection ``ve_dim → kv_dim`` (none when ``ve_dim == kv_dim``, as in the records), ``scale`` init 0.1."""

    def __init__(self, vocab_size: int, ve_dim: int, kv_dim: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, ve_dim)
        nn.init.normal_(self.embed.weight, std=0.01)
        self.proj = CastedLinear(ve_dim, kv_dim, bias=False) if ve_dim != kv_dim else None
        if self.proj is not None:
            nn.init.zeros_(self.proj.weight)
        self.scale = nn.Parameter(torch.tensor(0.1))

    def forward(self, ids: Tensor) -> Tensor:
        h = self.embed(ids)
        if self.proj is not None:
            h = self.proj(h)
        return h * self.scale.to(h.dtype)
