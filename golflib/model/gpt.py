"""The challenge GPT (SPEC §2.2-2.3) with every record-stack option of SPEC §3.C as config fields.

Baseline forward: ``x = rms_norm(Embedding(ids))``, ``x0 = x``; a U-Net stack (the first half of the virtual
layers push their outputs, the second half pops them LIFO with learned skip weights); each block mixes ``x`` with
``x0`` (``resid_mix``), then ``x += attn_scale * Attn(rms_norm(x))`` and ``x += mlp_scale * MLP(rms_norm(x))``;
``rms_norm`` → tied (or untied) head → soft-cap ``c*tanh(z/c)`` → fp32 cross-entropy.

Options (all default off): BigramHash and SmearGate on the embedding (C3, C4), value embeddings (C10), value
residual (C11), XSA (C7), partial/NTK RoPE (C8, A2), LN scale (C9), attention gates (C12), sigmoid skip gates
(C13), depth recurrence in its three record forms (C14, :mod:`golflib.model.recurrence`), and four parallel-residual
forms (C15): ``two_lane`` (#1204), ``gptj`` (#1412), ``routed`` (#1529/#1530/#1855) and ``merge`` (#1487).

There is exactly one forward pass (:meth:`GPT.hidden`); training, evaluation, sliding windows and test-time
training all call it, optionally with an ``adapter`` (test-time LoRA) and ``doc_ids`` (document isolation), so
every gate and mask is applied identically in every path (SPEC §7.2 traps 5-6). Parameter names of the baseline
match the official ``train_gpt.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golflib.settings.model import ModelConfig
from golflib.model.attention import Segments
from golflib.model.blocks import MLP, Adapter, Block
from golflib.model.embed import BigramHash, SmearGate, ValueEmbedding
from golflib.model.layers import CastedLinear, RMSNorm, rms_norm
from golflib.model.recurrence import encoder_decoder, max_loops, num_skip_weights, virtual_layers

__all__ = ["GPT", "Adapter", "count_params", "param_groups_summary"]


class GPT(nn.Module):
    """The challenge GPT. Token ids are int64 ``[B, T]``; see :meth:`forward` for outputs."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        L = cfg.num_layers
        self.n_cores = cfg.unique_layers or L
        self.core_of = [i % self.n_cores for i in range(L)]
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.model_dim)
        self.bigram = BigramHash(cfg.bigram_vocab_size, cfg.bigram_dim, cfg.model_dim, cfg.bigram_hash) \
            if cfg.bigram_vocab_size else None
        self.smear = SmearGate(cfg.smear_gate, cfg.model_dim, cfg.gate_window, cfg.bos_id, cfg.smear_bos_mask) \
            if cfg.smear_gate else None
        if cfg.ve_enabled:
            self.ve_shared = ValueEmbedding(cfg.vocab_size, cfg.ve_dim, cfg.num_kv_heads * cfg.head_dim)
            self.ve_layer_scales = nn.Parameter(torch.ones(len(cfg.ve_layers)))
        else:
            self.ve_shared = None
        self.blocks = nn.ModuleList([
            Block(cfg, i, has_core=i < self.n_cores, xsa=i < self.n_cores and i >= self.n_cores - cfg.xsa_last_n,
                  has_attn=not (cfg.disable_layer0_attn and i == 0))
            for i in range(L)])
        n_skip = num_skip_weights(cfg)
        self.skip_weights = nn.Parameter(torch.ones(n_skip, cfg.model_dim, dtype=torch.float32))
        self.skip_gates = nn.Parameter(torch.zeros(n_skip, cfg.model_dim)) if cfg.skip_gates_enabled else None
        pr = cfg.parallel_residual
        if pr in ("two_lane", "routed"):
            self.parallel_resid_lambdas = nn.Parameter(
                torch.full((L, 2), math.sqrt(1.1) if pr == "two_lane" else 1.1))
            self.parallel_post_lambdas = nn.Parameter(torch.ones(L, 2, 2))
        if pr == "merge":
            self.lane_merge = nn.Parameter(torch.tensor(0.5))
        self.repeat_mlps = nn.ModuleDict({key: MLP(cfg) for key in self._repeat_keys()}) \
            if cfg.repeat_untie_mlp else None
        self.final_norm = RMSNorm()
        self.lm_head = None if cfg.tie_embeddings else CastedLinear(cfg.model_dim, cfg.vocab_size, bias=False)
        if self.lm_head is not None:
            self.lm_head._zero_init = True
        self.active_loops = max_loops(cfg)  # evaluation runs fully looped; training may start unlooped
        self._init_weights()
        if cfg.unique_layers and cfg.unique_layers < L:
            self._scale_shared_core_grads()

    # ---- construction helpers ----------------------------------------------------------------------------------
    def _repeat_keys(self) -> list[str]:
        """``"<physical>_<occurrence>"`` of every repeated pass in the fully looped virtual list."""
        seen: dict[int, int] = {}
        keys = []
        for p in virtual_layers(self.cfg):
            seen[p] = seen.get(p, 0) + 1
            if seen[p] > 1:
                keys.append(f"{p}_{seen[p] - 1}")
        return keys

    def _init_weights(self) -> None:
        """Init rules of the records (SPEC §2.3, §3.C5), checked against each record's own init by
        ``tests/test_record_equivalence.py``: tied embedding ``N(0, TIED_EMBED_INIT_STD²)``; ``_zero_init`` linears
        zero; with ``ORTHO_INIT`` every other linear whose two dims are ``>= ORTHO_INIT_MIN_DIM`` is orthogonal with
        gain 1, and with ``ORTHO_PROJ_SCALE`` one named ``*.proj`` (the bigram/VE projections, whose zero init it
        overrides, as #287/#414/#461 do) is scaled by ``1/sqrt(2L)``; with ``ORTHO_INIT_BANKED`` the block Q/K/V/MLP-up
        matrices are orthogonal whatever their shape (#549/#1855 initialise their parameter banks slice by slice;
        it needs ``ORTHO_INIT``, refused otherwise);
        ``PROJ_INIT=scaled`` output projections are orthogonal with gain ``1/sqrt(2L)``; the rest keeps PyTorch's
        default."""
        cfg = self.cfg
        if cfg.tie_embeddings:
            nn.init.normal_(self.tok_emb.weight, mean=0.0, std=cfg.tied_embed_init_std)
        scale = 1.0 / math.sqrt(2 * cfg.num_layers)
        banked = (".attn.c_q", ".attn.c_k", ".attn.c_v", ".mlp.fc")
        for name, m in self.named_modules():
            if not isinstance(m, nn.Linear):
                continue
            in_bank = cfg.ortho_init_banked and name.startswith("blocks.") and name.endswith(banked)
            if getattr(m, "_zero_init", False):
                nn.init.zeros_(m.weight)
            elif getattr(m, "_scaled_init", False):  # PROJ_INIT=scaled, whatever ORTHO_INIT / ORTHO_PROJ_SCALE
                nn.init.orthogonal_(m.weight, gain=scale)
            elif cfg.ortho_init and (in_bank or min(m.weight.shape) >= cfg.ortho_init_min_dim):
                nn.init.orthogonal_(m.weight, gain=1.0)
                if cfg.ortho_proj_scale and name.endswith(".proj"):  # #162/#287: output-side projections
                    with torch.no_grad():
                        m.weight.mul_(scale)

    def _scale_shared_core_grads(self) -> None:
        """#461: a core used by n logical layers gets its gradient scaled by 1/n."""
        uses = [self.core_of.count(c) for c in range(self.n_cores)]
        self._shared_core_hooks = []
        for c, n in enumerate(uses):
            if n > 1:
                for p in list(self.blocks[c].attn.parameters()) + list(self.blocks[c].mlp.parameters()):
                    self._shared_core_hooks.append(p.register_hook(lambda g, n=n: g / n))

    # ---- recurrence state ---------------------------------------------------------------------------------------
    def set_active_loops(self, k: int) -> bool:
        """Turn on ``k`` loop passes (0 = plain stack); untied repeat MLPs are copied from their base MLP the first
        time they become active (#1204). Returns True when the state changed."""
        k = max(0, min(k, max_loops(self.cfg)))
        if k == self.active_loops:
            return False
        if self.repeat_mlps is not None:
            before = set(self._active_repeat_keys())
            self.active_loops = k
            with torch.no_grad():
                for key in set(self._active_repeat_keys()) - before:
                    p = int(key.split("_")[0])
                    self.repeat_mlps[key].load_state_dict(self.blocks[self.core_of[p]].mlp.state_dict())
        self.active_loops = k
        return True

    def _active_repeat_keys(self) -> list[str]:
        seen: dict[int, int] = {}
        out = []
        for p in self.virtual_layers():
            seen[p] = seen.get(p, 0) + 1
            if seen[p] > 1:
                out.append(f"{p}_{seen[p] - 1}")
        return out

    def virtual_layers(self) -> list[int]:
        """Physical block index of each virtual layer currently executed, in order (encoder half first)."""
        return virtual_layers(self.cfg, self.active_loops)

    # ---- forward paths ----------------------------------------------------------------------------------------
    def _skip(self, x: Tensor, s: Tensor, i: int) -> Tensor:
        """U-Net skip ``i``: ``x + w ⊙ s``, or with skip gates ``σ(γ) ⊙ x + (1 − σ(γ)) ⊙ (w ⊙ s)`` computed as the
        records' ``lerp(w ⊙ s, x, σ(γ))`` (#1089 → #1855)."""
        w = self.skip_weights[i].to(x.dtype)
        if self.skip_gates is None:
            return x + w * s
        return torch.lerp(w * s, x, torch.sigmoid(self.skip_gates[i].to(x.dtype)))

    def embed(self, input_ids: Tensor) -> Tensor:
        """``x0``: the (smeared, bigram-augmented) normalised embedding ``[B, T, d]``."""
        e = self.tok_emb(input_ids)
        if self.bigram is not None:
            e = e + self.bigram(input_ids).to(e.dtype)
        if self.smear is not None and self.smear.before_norm:
            e = self.smear(e, input_ids)
        x = rms_norm(e)
        if self.smear is not None and not self.smear.before_norm:
            x = self.smear(x, input_ids)
        return x

    def hidden(self, input_ids: Tensor, adapter: Adapter | None = None, doc_ids: Tensor | None = None,
               cu_seqlens: Tensor | None = None, max_seqlen: int = 0) -> Tensor:
        """Final-norm output ``[B, T, model_dim]`` (the input of the logit projection). ``doc_ids`` (int
        ``[B, T]``) restricts attention to each token's own document; ``cu_seqlens`` (int32, from
        :func:`golflib.model.attention.cu_seqlens_padded`) with ``max_seqlen`` (the segment length cap) are its
        precomputed varlen boundaries, which a compiled training step passes (as #1855)."""
        cfg = self.cfg
        if doc_ids is not None:  # mask / cu_seqlens built once, shared by every layer
            doc_ids = Segments(doc_ids, cu_seqlens, max_seqlen)
        x = self.embed(input_ids)
        x0 = x
        ve_base = self.ve_shared(input_ids) if self.ve_shared is not None else None
        layers = self.virtual_layers()
        enc, _ = encoder_decoder(layers)
        n_enc, n_skip = len(enc), self.skip_weights.size(0)
        pr, start = cfg.parallel_residual, cfg.parallel_start_layer
        skips: list = []
        lanes: tuple[Tensor, Tensor] | None = None
        v0 = None
        seen: dict[int, int] = {}
        for j, p in enumerate(layers):
            blk = self.blocks[p]
            core = self.blocks[self.core_of[p]]
            seen[p] = seen.get(p, 0) + 1
            mlp = self.repeat_mlps[f"{p}_{seen[p] - 1}"] if self.repeat_mlps is not None and seen[p] > 1 else core.mlp
            ve = None
            if ve_base is not None and p in cfg.ve_layers:
                ve = self.ve_layer_scales[cfg.ve_layers.index(p)].to(ve_base.dtype) * ve_base
            parallel = pr != "none" and p >= start and (pr in ("two_lane", "gptj") or j >= n_enc)
            if lanes is None and parallel and pr == "routed":  # #1855 splits before the skip: it reaches lane 0 only
                lanes = (x, x)
            if j >= n_enc and skips and j - n_enc < n_skip:
                s, i = skips.pop(), j - n_enc
                if lanes is None:
                    x = self._skip(x, s if not isinstance(s, tuple) else 0.5 * (s[0] + s[1]), i)
                elif pr == "two_lane":  # skip into both lanes
                    s0, s1 = s if isinstance(s, tuple) else (s, s)
                    lanes = (self._skip(lanes[0], s0, i), self._skip(lanes[1], s1, i))
                elif pr == "routed":  # skip into lane 0 only
                    lanes = (self._skip(lanes[0], s if not isinstance(s, tuple) else s[0], i), lanes[1])
                # merge (#1487): once the lanes run, the record adds the skip to a discarded x — it has no effect
            args = (adapter, j, ve, v0, doc_ids)
            if lanes is None and parallel and pr in ("two_lane", "merge"):
                lanes = (x, x)
            if lanes is not None:
                lanes, v = self._lane_block(blk, core, mlp, lanes, x0, p, args)
            elif parallel and pr == "gptj":
                x, v = blk.gptj(x, x0, core.attn, mlp, *args)
            else:
                x, v = blk.sequential(x, x0, core.attn, mlp, *args)
            if v0 is None:
                v0 = v
            if j < n_enc:
                skips.append(x if lanes is None else lanes)
        if lanes is not None:
            x = self._final_lanes(lanes)
        return self.final_norm(x)

    def _lane_block(self, blk: Block, core: Block, mlp, lanes, x0, p, args):
        l0, l1 = lanes
        pr = self.cfg.parallel_residual
        if pr == "two_lane":  # #1204: attention then MLP (reading the updated lane 1), both mixed with x0
            r, P = self.parallel_resid_lambdas[p].to(l0.dtype), self.parallel_post_lambdas[p].to(l0.dtype)
            a, v = blk.attn_branch(blk.mix(l0, x0), core.attn, *args)
            l0, l1 = r[0] * l0 + P[0, 0] * a, r[0] * l1 + P[0, 1] * a
            m = blk.mlp_branch(blk.mix(l1, x0), mlp, args[0], args[1])
            return (r[1] * l0 + P[1, 0] * m, r[1] * l1 + P[1, 1] * m), v
        if pr == "routed":  # #1529/#1855: both read the pre-update lanes; learned 2x2 routing
            r, P = self.parallel_resid_lambdas[p].to(l0.dtype), self.parallel_post_lambdas[p].to(l0.dtype)
            a, v = blk.attn_branch(blk.mix(l0, x0), core.attn, *args)
            m = blk.mlp_branch(l1, mlp, args[0], args[1])
            return (r[0] * l0 + P[0, 0] * a + P[1, 0] * m, r[1] * l1 + P[0, 1] * a + P[1, 1] * m), v
        # merge (#1487): independent lanes, attention on lane 0 and MLP on lane 1
        xm = blk.mix(l0, x0)
        a, v = blk.attn_branch(xm, core.attn, *args)
        return (xm + a, l1 + blk.mlp_branch(l1, mlp, args[0], args[1])), v

    def _final_lanes(self, lanes: tuple[Tensor, Tensor]) -> Tensor:
        l0, l1 = lanes
        if self.cfg.parallel_residual == "merge":
            m = self.lane_merge.to(l0.dtype)
            return m * l0 + (1.0 - m) * l1
        final = self.cfg.parallel_final_lane if self.cfg.parallel_residual == "routed" else "mean"
        return {"mean": lambda: 0.5 * (l0 + l1), "attn": lambda: l0, "mlp": lambda: l1}[final]()

    def logits_from_hidden(self, h: Tensor, adapter: Adapter | None = None) -> Tensor:
        """Soft-capped fp32 logits ``[..., vocab]`` from final hidden states."""
        w = self.tok_emb.weight if self.lm_head is None else self.lm_head.weight
        z = F.linear(h, w.to(h.dtype))
        if adapter is not None:
            z = adapter("head", -1, h, z)
        c = self.cfg.logit_softcap
        return c * torch.tanh(z.float() / c)

    def logits(self, input_ids: Tensor, adapter: Adapter | None = None, doc_ids: Tensor | None = None,
               cu_seqlens: Tensor | None = None, max_seqlen: int = 0) -> Tensor:
        """Soft-capped fp32 logits ``[B, T, vocab]`` (arguments as :meth:`hidden`)."""
        return self.logits_from_hidden(self.hidden(input_ids, adapter, doc_ids, cu_seqlens, max_seqlen), adapter)

    def token_nll(self, input_ids: Tensor, target_ids: Tensor, adapter: Adapter | None = None,
                  doc_ids: Tensor | None = None, cu_seqlens: Tensor | None = None, max_seqlen: int = 0) -> Tensor:
        """Per-target NLL in nats, fp32 ``[B, T]``: ``-log softmax(logits)[target]`` (arguments as
        :meth:`hidden`)."""
        logits = self.logits(input_ids, adapter, doc_ids, cu_seqlens, max_seqlen)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), target_ids.reshape(-1),
                               reduction="none").view_as(target_ids)

    def forward(self, input_ids: Tensor, target_ids: Tensor | None = None, adapter: Adapter | None = None,
                doc_ids: Tensor | None = None, cu_seqlens: Tensor | None = None, max_seqlen: int = 0) -> Tensor:
        """Mean cross-entropy (nats/token, fp32 scalar) if ``target_ids`` is given, else logits ``[B, T, V]``
        (document arguments as :meth:`hidden`)."""
        logits = self.logits(input_ids, adapter, doc_ids, cu_seqlens, max_seqlen)
        if target_ids is None:
            return logits
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), target_ids.reshape(-1), reduction="mean")


def unused_parameter_reasons(cfg: ModelConfig) -> list[str]:
    """Why some parameter of a GPT built from ``cfg`` may get no gradient in a training step (empty: every
    parameter gets one every step). Under DDP such a model needs ``find_unused_parameters=True``, as the
    depth-recurrence records use (#1204, #1260): otherwise the second step fails with "Expected to have finished
    reduction in the prior iteration". Reasons: layer 0's value-residual λ (no v_0 to mix yet; SPEC §3.C11) and
    the untied repeat MLPs before their loop pass turns on (#1204)."""
    out = []
    if cfg.value_residual:
        out.append("VALUE_RESIDUAL=1 (layer 0's vr_lambda)")
    if cfg.repeat_untie_mlp and max_loops(cfg):
        out.append("REPEAT_UNTIE_MLP=1 (repeat MLPs before their loop pass is on)")
    return out


def count_params(model: nn.Module) -> int:
    """Number of distinct parameters (elements)."""
    return sum(p.numel() for p in model.parameters())


def param_groups_summary(model: GPT) -> dict[str, int]:
    """Parameter counts by role: embedding, head, blocks (incl. per-block scalars), the rest."""
    emb = model.tok_emb.weight.numel()
    blocks = sum(p.numel() for p in model.blocks.parameters())
    head = 0 if model.lm_head is None else model.lm_head.weight.numel()
    out = {"embedding": emb, "blocks": blocks, "head": head, "other": count_params(model) - emb - blocks - head,
           "skip_weights": model.skip_weights.numel(), "virtual_layers": len(virtual_layers(model.cfg))}
    out["per_block"] = blocks // max(len(model.blocks), 1)
    return out
