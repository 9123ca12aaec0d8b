"""The baseline optimizer split (SPEC §2.4).

| group            | params                                                    | optimizer | LR                  |
|------------------|-----------------------------------------------------------|-----------|---------------------|
| token embedding  | ``tok_emb.weight``                                        | Adam      | TIED_EMBED_LR / EMBED_LR |
| untied head      | ``lm_head.weight``                                        | Adam      | HEAD_LR             |
| matrices         | 2-D params inside ``blocks`` not matching a control name  | Muon      | MATRIX_LR           |
| scalars/control  | <2-D or control-named block params + ``skip_weights``     | Adam      | SCALAR_LR           |

Every param group carries ``base_lr``; the training loop sets ``lr = base_lr * multiplier`` each step.
Fused Adam is used on CUDA, the plain implementation elsewhere.
"""

from __future__ import annotations

import torch

from golflib.config import OptimConfig
from golflib.model.layers import CONTROL_PATTERNS
from golflib.optim.muon import Muon


def is_control(name: str) -> bool:
    return any(p in name for p in CONTROL_PATTERNS)


def split_params(model) -> dict[str, list[torch.nn.Parameter]]:
    """Partition the model's parameters into ``embed``, ``head``, ``matrix``, ``scalar``; every parameter lands in
    exactly one group (raises ``RuntimeError`` otherwise)."""
    groups: dict[str, list] = {"embed": [model.tok_emb.weight], "head": [], "matrix": [], "scalar": []}
    if getattr(model, "lm_head", None) is not None:
        groups["head"].append(model.lm_head.weight)
    for name, p in model.blocks.named_parameters():
        (groups["matrix"] if p.ndim == 2 and not is_control(name) else groups["scalar"]).append(p)
    if model.skip_weights.numel() > 0:
        groups["scalar"].append(model.skip_weights)
    seen = {id(p) for g in groups.values() for p in g}
    missing = [n for n, p in model.named_parameters() if id(p) not in seen]
    if missing:
        raise RuntimeError(f"parameters not assigned to an optimizer group: {missing}")
    return groups


def build_optimizers(model, cfg: OptimConfig, tie_embeddings: bool) -> list[torch.optim.Optimizer]:
    """``[Adam(embed), (Adam(head)), Muon(matrices), Adam(scalars)]`` with ``base_lr`` on every group."""
    groups = split_params(model)
    fused = bool(next(model.parameters()).is_cuda)
    adam_kw = dict(betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps, fused=fused)

    def adam(params, lr):
        return torch.optim.Adam([{"params": params, "lr": lr, "base_lr": lr}], **adam_kw)

    token_lr = cfg.tied_embed_lr if tie_embeddings else cfg.embed_lr
    opts: list[torch.optim.Optimizer] = [adam(groups["embed"], token_lr)]
    if groups["head"]:
        opts.append(adam(groups["head"], cfg.head_lr))
    if groups["matrix"]:
        muon = Muon(groups["matrix"], lr=cfg.matrix_lr, momentum=cfg.muon_momentum,
                    backend_steps=cfg.muon_backend_steps)
        for g in muon.param_groups:
            g["base_lr"] = cfg.matrix_lr
        opts.append(muon)
    if groups["scalar"]:
        opts.append(adam(groups["scalar"], cfg.scalar_lr))
    return opts
