"""The score-first TTT and n-gram mixing groups of the run configuration (SPEC §3.E, §3.F, §4); env-var names as
in :mod:`golflib.config`."""

from __future__ import annotations

from dataclasses import dataclass

from golflib.settings.base import check_field
from golflib.settings.training import EVAL_WINDOW_SETS


TTT_KINDS = ("chunked", "lora", "phased")
LORA_SITES = ("q", "k", "v", "o", "mlp", "head")  # projections a doc-LoRA adapter can sit on (head = lm_head)
LORA_ADAPTER_KINDS = ("shared", "per_slot")  # golflib.eval.ttt_lora.BatchedLoRA init / lifecycle
LORA_LAST_WINDOWS = ("chunk", "doc_end")  # window of a document's last LoRA chunk


@dataclass(frozen=True)
class TTTConfig:
    """Score-first test-time training on the dequantized artifact model (SPEC §3.E; legality §4).

    Kinds: ``chunked`` = full-model TTT over TTT_CHUNK_TOKENS chunks scored by sliding windows (E2, #461/#549),
    ``lora`` = per-document batched LoRA (E4, #1530), ``phased`` = doc-LoRA plus global SGD of the base model on
    already-scored documents at phase boundaries (E5, #1610/#1626, as #1855 runs it). Defaults are the records'
    values, except the #1855-specific switches (TTT_LORA_ADAPTERS, TTT_LORA_LAST_WINDOW) and TTT_WINDOWS, which
    keep golflib's choices unless a preset sets its record's.
    """

    ttt_enabled: bool = False  # run the TTT_KINDS protocols after the round-trip eval (off in the baseline)
    ttt_kinds: tuple[str, ...] = ("chunked",)  # comma list of chunked | lora | phased
    # chunked full-model TTT (#549: lr 0.002, 3 epochs, 32,768-token chunks, freeze 0, SGD momentum 0.9)
    ttt_lr: float = 0.002  # peak LR, cosine-decayed across chunks
    ttt_epochs: int = 3  # passes over each chunk after it is scored (never the last chunk)
    ttt_chunk_tokens: int = 32768  # target positions per chunk
    ttt_freeze_blocks: int = 0  # the first N physical blocks stay frozen (#461 used 2)
    ttt_momentum: float = 0.9  # SGD momentum (AdamW: beta1)
    ttt_batch_seqs: int = 32  # training sequences (EVAL_SEQ_LEN tokens) per step and rank
    ttt_grad_clip: float = 1.0  # global grad-norm clip; 0 = off
    ttt_optimizer: str = "sgd"  # sgd | adamw
    ttt_windows: str = ""  # scoring windows: fixed | legacy | legacy_stride (#461/#549); "" = EVAL_WINDOWS
    # per-document batched LoRA TTT (#1530 / #1626: rank 96, lr 1e-4, chunk 48, batch 64 docs, AdamW b1 0)
    ttt_lora_rank: int = 96
    ttt_lora_alpha: float = 0.0  # LoRA output scale alpha/rank; 0 = scale 1
    ttt_lora_lr: float = 1e-4
    ttt_chunk_size: int = 48  # tokens scored (then trained on) per LoRA step
    ttt_eval_seq_len: int = 0  # context window of a LoRA chunk; 0 = EVAL_SEQ_LEN (or TRAIN_SEQ_LEN)
    ttt_batch_size: int = 64  # documents per LoRA batch (sorted by length)
    ttt_beta1: float = 0.0
    ttt_beta2: float = 0.999
    ttt_weight_decay: float = 0.5  # AdamW decoupled weight decay of the adapters
    ttt_warm_start_a: bool = False  # keep LoRA A across documents, zero only B (#1767)
    # adapter sites: all of them as #1530+ (Q, K, V, O, MLP of every virtual layer + lm_head); E1 used "q,v,head"
    ttt_lora_sites: tuple[str, ...] = LORA_SITES
    # shared: every slot's A is one seeded draw, one adapter set reset per batch | per_slot (#1855): A drawn per slot
    # from a generator seeded with SEED at the TTT start (head,q,v,k,mlp,o order), fresh sets for a short batch and
    # after every phase
    ttt_lora_adapters: str = "shared"
    # chunk: a chunk's window ends at the chunk's end (its start never depends on the document's length) |
    # doc_end (#1855): a document's last chunk is scored in the window ending at the document's end
    ttt_lora_last_window: str = "chunk"
    # phased global SGD over already-scored documents (#1626: 3 phases over 2,000 docs, lr 0.001, 1 epoch)
    phased_ttt_prefix_docs: int = 2000  # documents (in processing order) covered by the phases
    phased_ttt_num_phases: int = 3  # phase boundaries at prefix*i/phases documents
    global_ttt_lr: float = 0.001
    global_ttt_momentum: float = 0.9
    global_ttt_epochs: int = 1
    global_ttt_chunk_tokens: int = 32768  # cosine LR steps over chunks of this many tokens
    global_ttt_batch_seqs: int = 32
    global_ttt_grad_clip: float = 1.0

    def __post_init__(self) -> None:
        check_field(bool(self.ttt_kinds) and all(k in TTT_KINDS for k in self.ttt_kinds)
                    and len(set(self.ttt_kinds)) == len(self.ttt_kinds), "ttt_kinds",
                    f"must be distinct names from {', '.join(TTT_KINDS)}", self.ttt_kinds)
        check_field(bool(self.ttt_lora_sites) and all(k in LORA_SITES for k in self.ttt_lora_sites)
                    and len(set(self.ttt_lora_sites)) == len(self.ttt_lora_sites), "ttt_lora_sites",
                    f"must be distinct names from {', '.join(LORA_SITES)}", self.ttt_lora_sites)
        check_field(self.ttt_optimizer in ("sgd", "adamw"), "ttt_optimizer", "must be sgd or adamw", self.ttt_optimizer)
        check_field(self.ttt_windows in ("",) + EVAL_WINDOW_SETS, "ttt_windows",
                    f"must be empty (= EVAL_WINDOWS) or one of {', '.join(EVAL_WINDOW_SETS)}", self.ttt_windows)
        check_field(self.ttt_lora_adapters in LORA_ADAPTER_KINDS, "ttt_lora_adapters",
                    f"must be one of {', '.join(LORA_ADAPTER_KINDS)}", self.ttt_lora_adapters)
        check_field(self.ttt_lora_last_window in LORA_LAST_WINDOWS, "ttt_lora_last_window",
                    f"must be one of {', '.join(LORA_LAST_WINDOWS)}", self.ttt_lora_last_window)
        for name in ("ttt_lr", "ttt_grad_clip", "ttt_lora_lr", "ttt_lora_alpha", "ttt_weight_decay",
                     "global_ttt_lr", "global_ttt_grad_clip"):
            check_field(getattr(self, name) >= 0, name, "must be >= 0", getattr(self, name))
        for name in ("ttt_momentum", "ttt_beta1", "ttt_beta2", "global_ttt_momentum"):
            check_field(0 <= getattr(self, name) < 1, name, "must be in [0, 1)", getattr(self, name))
        for name in ("ttt_epochs", "ttt_freeze_blocks", "ttt_eval_seq_len", "phased_ttt_prefix_docs",
                     "global_ttt_epochs"):
            check_field(getattr(self, name) >= 0, name, "must be >= 0", getattr(self, name))
        for name in ("ttt_chunk_tokens", "ttt_batch_seqs", "ttt_lora_rank", "ttt_chunk_size", "ttt_batch_size",
                     "phased_ttt_num_phases", "global_ttt_chunk_tokens", "global_ttt_batch_seqs"):
            check_field(getattr(self, name) >= 1, name, "must be >= 1", getattr(self, name))


NGRAM_SCHEDULES = ("entropy", "entropy_order", "fixed", "none")
NGRAM_PROTOCOLS = ("sliding", "chunked", "lora", "phased")


@dataclass(frozen=True)
class NgramConfig:
    """Eval-time n-gram mixing done right (SPEC §3.F4/F5, §4.5; :mod:`golflib.eval.ngram`): exact multi-order counts
    of already-scored targets, interpolated Witten-Bell over the whole vocabulary, mixed into the model's distribution
    with an entropy-adaptive α, optional causal exponential tilt (#1514). Off in the baseline."""

    ngram_enabled: bool = False  # run NGRAM_PROTOCOLS with the mixer after the round-trip eval and TTT
    ngram_protocols: tuple[str, ...] = ("sliding",)  # sliding | chunked | lora | phased (TTT kinds mix adapted logits)
    ngram_orders: tuple[int, ...] = (2, 3, 4, 5, 6, 7)  # n-gram orders counted exactly (context length n - 1)
    ngram_alpha_schedule: str = "entropy"  # entropy (#940) | entropy_order (+ highest order with a hit) | fixed | none
    ngram_alpha: float = 0.4  # α of the fixed schedule
    ngram_ent_base: float = 0.05  # α = base + span * sigmoid(scale * (H - center)), H = model entropy in nats (#940)
    ngram_ent_span: float = 0.55
    ngram_ent_scale: float = 2.0
    ngram_ent_center: float = 4.0
    ngram_ent_order_slope: float = 0.25  # entropy_order: centre lowered by this per order above the lowest (#798)
    ngram_tilt_beta: float = 0.0  # causal exponential tilt strength (#1514 used 2.0); 0 = off
    ngram_tilt_tau: float = 0.5  # tilt only if the hint's maximum-likelihood probability >= tau
    ngram_tilt_min_count: int = 2  # ... and its context was seen at least this many times
    ngram_doc_contexts: bool = True  # contexts stop at the BOS that opens a document
    ngram_update_every: int = 64  # scored positions between additions to the counts; 0 = once per scored batch
    ngram_check_rows: int = 2  # mixed rows per scored batch passed through the ledger's C2 check
    # the mixer: builtin (golflib.eval.ngram.NgramMixer) or one a plugin registered (golflib.plugins.register_mixer)
    ngram_mixer: str = "builtin"

    def __post_init__(self) -> None:
        check_field(bool(self.ngram_protocols) and all(k in NGRAM_PROTOCOLS for k in self.ngram_protocols)
                    and len(set(self.ngram_protocols)) == len(self.ngram_protocols), "ngram_protocols",
                    f"must be distinct names from {', '.join(NGRAM_PROTOCOLS)}", self.ngram_protocols)
        check_field(bool(self.ngram_orders) and all(2 <= o <= 32 for o in self.ngram_orders)
                    and len(set(self.ngram_orders)) == len(self.ngram_orders), "ngram_orders",
                    "must be distinct integers in [2, 32]", self.ngram_orders)
        check_field(self.ngram_alpha_schedule in NGRAM_SCHEDULES, "ngram_alpha_schedule",
                    f"must be one of {', '.join(NGRAM_SCHEDULES)}", self.ngram_alpha_schedule)
        check_field(0.0 <= self.ngram_alpha <= 1.0, "ngram_alpha", "must be in [0, 1]", self.ngram_alpha)
        check_field(self.ngram_ent_base >= 0.0, "ngram_ent_base", "must be >= 0", self.ngram_ent_base)
        check_field(self.ngram_ent_span >= 0.0 and self.ngram_ent_base + self.ngram_ent_span <= 1.0, "ngram_ent_span",
                    "must be >= 0 with NGRAM_ENT_BASE + NGRAM_ENT_SPAN <= 1", self.ngram_ent_span)
        check_field(self.ngram_ent_scale >= 0.0, "ngram_ent_scale", "must be >= 0", self.ngram_ent_scale)
        check_field(self.ngram_tilt_beta >= 0.0, "ngram_tilt_beta", "must be >= 0", self.ngram_tilt_beta)
        check_field(0.0 <= self.ngram_tilt_tau <= 1.0, "ngram_tilt_tau", "must be in [0, 1]", self.ngram_tilt_tau)
        check_field(self.ngram_tilt_min_count >= 1, "ngram_tilt_min_count", "must be >= 1", self.ngram_tilt_min_count)
        check_field(self.ngram_check_rows >= 0, "ngram_check_rows", "must be >= 0", self.ngram_check_rows)
        check_field(self.ngram_update_every >= 0, "ngram_update_every", "must be >= 0", self.ngram_update_every)
