"""The baseline optimizer split (SPEC §2.4).

| group           | params                                          | optimizer | LR / WD                              |
|-----------------|-------------------------------------------------|-----------|--------------------------------------|
| token embedding | ``tok_emb`` (+ BigramHash / VE tables)          | AdamW     | TIED_EMBED_LR or EMBED_LR / EMBED_WD |
| untied head     | ``lm_head.weight``                              | AdamW     | HEAD_LR / EMBED_WD                   |
| matrices        | other 2-D params not matching a control name    | Muon      | MATRIX_LR / MUON_WD                  |
| scalars/control | vectors, gains, gates, lambdas, skip weights    | AdamW     | SCALAR_LR / ADAM_WD                  |

``EMBED_PROJ_OPTIMIZER=adam`` moves the BigramHash / value-embedding projections (``bigram.proj``,
``ve_shared.proj``) from Muon to the scalar AdamW group, as #549 and #1019 do (their Muon only sees the four
parameter banks); #287/#414/#1487 train them with Muon.

Every param group carries ``base_lr`` (Muon also ``base_wd``); the training loop sets ``lr = base_lr * multiplier``
each step. With all WD at 0 (the baseline) AdamW is exactly Adam. Fused AdamW on CUDA, the plain one elsewhere.
"""

from __future__ import annotations

import torch

from golflib.settings.training import OptimConfig
from golflib.model.layers import CONTROL_PATTERNS
from golflib.optim.muon import Muon


def is_control(name: str) -> bool:
    return any(p in name for p in CONTROL_PATTERNS)


EMBED_TABLES = ("tok_emb.weight", "bigram.embed.weight", "ve_shared.embed.weight")
EMBED_PROJECTIONS = ("bigram.proj.weight", "ve_shared.proj.weight")


def split_params(model, embed_proj_optimizer: str = "muon") -> dict[str, list[torch.nn.Parameter]]:
    """Partition the model's parameters into ``embed`` (token, BigramHash and value-embedding tables), ``head``
    (untied lm_head), ``matrix`` (every other 2-D parameter not matching a control name: block matrices, the
    BigramHash/VE projections unless ``embed_proj_optimizer="adam"``, untied repeat MLPs) and ``scalar`` (vectors,
    gains, gates, lambdas, skip weights). Every parameter lands in exactly one group (raises ``RuntimeError``
    otherwise)."""
    groups: dict[str, list] = {"embed": [], "head": [], "matrix": [], "scalar": []}
    for name, p in model.named_parameters():
        if name in EMBED_TABLES:
            groups["embed"].append(p)
        elif name == "lm_head.weight":
            groups["head"].append(p)
        elif name in EMBED_PROJECTIONS and embed_proj_optimizer == "adam":
            groups["scalar"].append(p)
        elif p.ndim == 2 and not is_control(name):
            groups["matrix"].append(p)
        else:
            groups["scalar"].append(p)
    n = sum(len(g) for g in groups.values())
    if n != len(list(model.parameters())):
        raise RuntimeError("parameters not assigned to exactly one optimizer group")
    return groups


def build_optimizers(model, cfg: OptimConfig, tie_embeddings: bool, sharded: bool = False,
                     compile_ns: bool = False) -> list[torch.optim.Optimizer]:
    """``[Adam(embed), (Adam(head)), Muon(matrices), Adam(scalars)]`` with ``base_lr`` on every group. ``sharded``:
    the Muon matrices' gradients arrive un-averaged (kept out of DDP) and Muon reduce-scatters them (Parallel Muon,
    :mod:`golflib.optim.muon`); ``compile_ns``: Newton–Schulz as a compiled graph per bank shape."""
    groups = split_params(model, cfg.embed_proj_optimizer)
    fused = bool(next(model.parameters()).is_cuda)
    adam_kw = dict(betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps, fused=fused)

    def adam(params, lr, wd):
        # AdamW with decoupled WD (D3); with wd = 0 it is exactly Adam (the baseline)
        return torch.optim.AdamW([{"params": params, "lr": lr, "base_lr": lr, "weight_decay": wd}], **adam_kw)

    token_lr = cfg.tied_embed_lr if tie_embeddings else cfg.embed_lr
    opts: list[torch.optim.Optimizer] = [adam(groups["embed"], token_lr, cfg.embed_wd)]
    if groups["head"]:
        opts.append(adam(groups["head"], cfg.head_lr, cfg.embed_wd))
    if groups["matrix"]:
        muon = Muon(groups["matrix"], lr=cfg.matrix_lr, momentum=cfg.muon_momentum,
                    backend_steps=cfg.muon_backend_steps, weight_decay=cfg.muon_wd, row_norm=cfg.muon_row_normalize,
                    coeffs=cfg.muon_ns_coeffs, banked=cfg.muon_banked, sharded=sharded, compile_ns=compile_ns)
        for g in muon.param_groups:
            g["base_lr"] = cfg.matrix_lr
            g["base_wd"] = cfg.muon_wd
        opts.append(muon)
    if groups["scalar"]:
        opts.append(adam(groups["scalar"], cfg.scalar_lr, cfg.adam_wd))
    return opts
