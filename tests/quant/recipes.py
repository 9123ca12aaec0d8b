"""Synthetic trained-like state dicts, Hessians and a code digest for the record-export tests (test_recipes.py).

The pinned digests in test_recipes.py were produced by running each record's own quantization functions (from its
``train_gpt.py``, with the hard-coded size thresholds scaled like the reference adapters: 65,536 → 1,024, #461's
8,192 → 512) on :func:`synthetic_state` / :func:`synthetic_hessians` and hashing the result with :func:`digest`.
Only numbers are kept here; no record code is.

The weights are Gaussian rows with log-normal row scales (some rows' max above 1, most below, so the records' 1/qmax
scale floors bind on some rows and not on others), a few 8x outliers (so percentiles and the clip search matter) and
a dead input column in one Hessian.
"""

from __future__ import annotations

import hashlib

import torch

DIM, LAYERS, VOCAB = 64, 3, 1024


def _mat(g: torch.Generator, rows: int, cols: int, std: float = 0.05) -> torch.Tensor:
    w = torch.randn(rows, cols, generator=g) * std
    w *= torch.exp(torch.randn(rows, 1, generator=g) * 0.8)
    idx = torch.randint(0, rows * cols, (max(1, rows * cols // 2000),), generator=g)
    w.view(-1)[idx] *= 8.0
    return w


def synthetic_state(seed: int = 0, *, bigram: bool = True, ve: bool = True, gates: bool = False) -> \
        dict[str, torch.Tensor]:
    """A golflib-named state dict of a 3-layer width-64 GPT (vocab 1024): embedding tables, block matrices,
    control tensors; ``bigram`` (BigramHash 512×32 + proj), ``ve`` (value embedding 1024×16 + proj 32×16), ``gates``
    (#1855's sparse attention gates 8×12). Float32, deterministic in ``seed``."""
    g = torch.Generator().manual_seed(seed)
    d = DIM
    sd: dict[str, torch.Tensor] = {"tok_emb.weight": _mat(g, VOCAB, d, 0.05)}
    if bigram:
        sd["bigram.embed.weight"] = _mat(g, 512, 32, 0.02)
        sd["bigram.proj.weight"] = _mat(g, d, 32, 0.05)
        sd["bigram.scale"] = torch.tensor(0.05)
    sd["smear.gate"] = torch.randn(d, generator=g)
    for i in range(LAYERS):
        p = f"blocks.{i}."
        sd[p + "attn_scale"] = 1 + 0.1 * torch.randn(d, generator=g)
        sd[p + "mlp_scale"] = 1 + 0.1 * torch.randn(d, generator=g)
        sd[p + "resid_mix"] = torch.randn(2, d, generator=g)
        sd[p + "attn.c_q.weight"] = _mat(g, d, d)
        sd[p + "attn.c_k.weight"] = _mat(g, d // 2, d)
        sd[p + "attn.c_v.weight"] = _mat(g, d // 2, d)
        sd[p + "attn.proj.weight"] = _mat(g, d, d, 0.03)
        sd[p + "attn.q_gain"] = torch.full((8,), 1.5)
        if gates:
            sd[p + "attn.gate.attn_gate_w"] = _mat(g, 8, 12, 0.1)
        sd[p + "mlp.fc.weight"] = _mat(g, 3 * d, d)
        sd[p + "mlp.proj.weight"] = _mat(g, d, 3 * d, 0.03)
    if ve:
        sd["ve_shared.embed.weight"] = _mat(g, VOCAB, 16, 0.05)
        sd["ve_shared.proj.weight"] = _mat(g, 32, 16, 0.05)
        sd["ve_shared.scale"] = torch.tensor([0.1])
        sd["ve_layer_scales"] = torch.ones(2)
    sd["skip_weights"] = torch.ones(1, d)
    return sd


def synthetic_hessians(sd: dict[str, torch.Tensor], seed: int = 1, *, head: bool = True) -> \
        dict[str, torch.Tensor]:
    """``H = XᵀX / 4`` (float32, as ``Σ XᵀX / n_batches`` over 4 batches) for every block matrix, from inputs with
    uneven column scales (``blocks.1.mlp.proj``'s input column 5 is dead), plus the tied head's Hessian under
    ``tok_emb.weight`` when ``head``."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, w in sd.items():
        is_block = name.startswith("blocks.") and name.endswith(".weight") and (".attn.c" in name or ".proj." in name
                                                                            or ".fc." in name)
        if not (is_block or (head and name == "tok_emb.weight")):
            continue
        cols = w.shape[1]
        x = torch.randn(512, cols, generator=g) * (0.2 + torch.rand(cols, generator=g) * 2.0)
        if name == "blocks.1.mlp.proj.weight":
            x[:, 5] = 0.0
        out[name] = (x.T @ x) / 4
    return out


def digest(entries: dict[str, dict[str, torch.Tensor]]) -> str:
    """sha256 of ``{tensor name: {role: tensor}}`` (roles ``pass``, ``q``, ``scale``, ``lqer.a.q``, ``lqer.a.scale``,
    ``lqer.b.q``, ``lqer.b.scale``), in sorted order; each tensor contributes name, role, dtype, numel and its raw
    bytes (flattened, so a 0-dim and a [1] scale are the same)."""
    h = hashlib.sha256()
    for name in sorted(entries):
        for role in sorted(entries[name]):
            t = entries[name][role].detach().contiguous().reshape(-1)
            h.update(f"{name}|{role}|{t.dtype}|{t.numel()}|".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def golflib_entries(qs) -> dict[str, dict[str, torch.Tensor]]:
    """:func:`digest` entries of a golflib :class:`~golflib.quant.int8.QuantizedState`."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name, e in qs.meta["tensors"].items():
        if e["kind"] == "passthrough":
            out[name] = {"pass": qs.tensors[name]}
            continue
        out[name] = {"q": qs.tensors[name + ".q"], "scale": qs.tensors[name + ".scale"]}
        for k in ("a.q", "a.scale", "b.q", "b.scale"):
            if f"{name}.lqer.{k}" in qs.tensors:
                out[name]["lqer." + k] = qs.tensors[f"{name}.lqer.{k}"]
    return out
