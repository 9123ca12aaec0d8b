"""The model group of the run configuration: the GPT architecture and every record technique that changes it
(SPEC §2.2-2.3, §3.C); env-var names as in :mod:`golflib.config`."""

from __future__ import annotations

from dataclasses import dataclass

from golflib.settings.base import check_field


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the GPT (SPEC §2.2)."""

    vocab_size: int = 1024  # token ids are uint16 in shards, so at most 65,536
    num_layers: int = 9  # physical transformer blocks
    model_dim: int = 512
    num_heads: int = 8
    num_kv_heads: int = 4  # GQA: num_heads must be a multiple
    mlp_mult: float = 2.0  # MLP hidden = int(mlp_mult * model_dim)
    tie_embeddings: bool = True  # output head = token embedding
    rope_base: float = 10000.0
    logit_softcap: float = 30.0  # logits = c * tanh(z / c)
    qk_gain_init: float = 1.5  # per-head q multiplier (attention temperature) [C16]
    tied_embed_init_std: float = 0.005
    bos_id: int = 1  # BOS token id (SmearGate BOS mask, document boundaries)
    # ---- record-stack architecture (SPEC §3.C); every default is the baseline behaviour ----
    mlp_activation: str = "relu_sq"  # relu_sq | leaky_relu_sq [C2, #493/#549]
    leaky_relu_slope: float = 0.5  # negative slope of leaky_relu_sq
    smear_gate: int = 0  # SmearGate version 1 (#65) | 2 (#162) | 3 (#1667); 0 = off [C3]
    smear_bos_mask: bool = True  # no previous-token smear at BOS (the #1851 fix); the #162..#1019 records had none
    gate_window: int = 12  # input dims of the v3 smear gate and the output/sparse attention gates
    bigram_vocab_size: int = 0  # BigramHash buckets; 0 = off [C4]
    bigram_dim: int = 128  # BigramHash table width (projected to model_dim)
    bigram_hash: str = "xor"  # xor: (36313*cur ^ 27191*prev) % (B-1), pos 0 -> B-1 | mul92821: (prev*92821+cur) % B
    ortho_init: bool = False  # orthogonal init of linears with both dims >= ORTHO_INIT_MIN_DIM [C5, #162/#198]
    ortho_init_min_dim: int = 64  # smallest dimension an orthogonal-initialised linear may have (records: 64)
    ortho_init_banked: bool = False  # with ORTHO_INIT: block Q/K/V/MLP-up orthogonal at any shape (#549, #1855)
    ortho_proj_scale: bool = True  # orthogonal linears named *.proj (bigram/VE projections) x1/sqrt(2L) (#287)
    proj_init: str = "zero"  # attn/MLP output projections: zero | scaled (orthogonal × 1/sqrt(2L))
    xsa_last_n: int = 0  # exclusive self-attention on the last N (physical / core) layers [C7]
    rope_dims: int = 0  # rotate only the first ROPE_DIMS of each head; 0 = all [C8]
    rope_train_seq_len: int = 0  # NTK base rescale for sequences longer than this; 0 = off [A2]
    ln_scale: bool = False  # scale block norm outputs by 1/sqrt(layer+1) [C9]
    ve_enabled: bool = False  # value embeddings [C10]
    ve_dim: int = 128  # value-embedding table width
    ve_layers: tuple[int, ...] = (9, 10)  # layers whose V gets the value embedding
    value_residual: bool = False  # v_l = λ0 v_0 + λ1 v_l, λ init (0.5, 0.5) [C11]
    attn_gate: str = "none"  # none | headwise | g1 | output | sparse [C12]
    gated_attn_init_std: float = 0.01  # init std of the G1 gate matrix
    sparse_attn_gate_scale: float = 0.5  # κ of the sparse gate σ(κ·W x[:GATE_WINDOW])
    skip_gates_enabled: bool = False  # sigmoid-gated U-Net skips [C13]
    num_loops: int = 0  # extra passes over physical layers LOOP_START..LOOP_END [C14, #1394]
    loop_start: int = 0
    loop_end: int = 0
    recur_layers: tuple[int, ...] = ()  # one extra pass over these layers after max(...) [C14, #1204/#1487]
    unique_layers: int = 0  # shared cores: layer i uses the attention/MLP of core i % UNIQUE_LAYERS [#461]
    repeat_untie_mlp: bool = False  # repeated passes get their own MLP, copied when looping starts [#1204]
    skip_sizing: str = "virtual"  # U-Net skip count from the looped virtual list | physical (#1487)
    parallel_residual: str = "none"  # none | two_lane (#1204) | gptj (#1412) | routed (#1529) | merge (#1487) [C15]
    parallel_start_layer: int = 0  # first physical layer with parallel residuals
    parallel_final_lane: str = "mean"  # routed: mean | attn | mlp
    disable_layer0_attn: bool = False  # physical layer 0 is MLP-only, no attention weights allocated [C14, #1204]

    # the model class, by registered name: gpt (golflib.model.gpt.GPT) or one a plugin registered with
    # golflib.plugins.register_model_class (EVAL_PLUGINS); the artifact loads into this class
    model_class: str = "gpt"

    def __post_init__(self) -> None:
        check_field(self.ortho_init_min_dim >= 0, "ortho_init_min_dim", "must be >= 0", self.ortho_init_min_dim)
        check_field(bool(self.model_class) and self.model_class.replace("_", "").replace(".", "").isalnum(),
                    "model_class", "must be a registered class name (letters, digits, '_', '.')", self.model_class)
        check_field(2 <= self.vocab_size <= 65536, "vocab_size", "must be in [2, 65536] (uint16 token ids)",
                    self.vocab_size)
        check_field(self.num_layers >= 1, "num_layers", "must be >= 1", self.num_layers)
        check_field(self.num_heads >= 1, "num_heads", "must be >= 1", self.num_heads)
        check_field(self.model_dim >= 1, "model_dim", "must be >= 1", self.model_dim)
        check_field(self.model_dim % self.num_heads == 0, "model_dim",
                    f"must be divisible by NUM_HEADS={self.num_heads}", self.model_dim)
        check_field(self.num_kv_heads >= 1 and self.num_heads % self.num_kv_heads == 0, "num_kv_heads",
                    f"must divide NUM_HEADS={self.num_heads}", self.num_kv_heads)
        check_field((self.model_dim // self.num_heads) % 2 == 0, "model_dim",
                    "model_dim / num_heads (head_dim) must be even for RoPE", self.model_dim)
        check_field(self.mlp_mult > 0, "mlp_mult", "must be > 0", self.mlp_mult)
        check_field(self.logit_softcap > 0, "logit_softcap", "must be > 0", self.logit_softcap)
        check_field(self.rope_base > 1, "rope_base", "must be > 1", self.rope_base)
        check_field(0 <= self.bos_id < self.vocab_size, "bos_id", f"must be in [0, VOCAB_SIZE={self.vocab_size})",
               self.bos_id)
        check_field(self.mlp_activation in ("relu_sq", "leaky_relu_sq"), "mlp_activation",
                    "must be relu_sq or leaky_relu_sq", self.mlp_activation)
        check_field(self.smear_gate in (0, 1, 2, 3), "smear_gate", "must be 0 (off), 1, 2 or 3", self.smear_gate)
        check_field(1 <= self.gate_window <= self.model_dim, "gate_window", "must be in [1, MODEL_DIM]",
                    self.gate_window)
        check_field(self.bigram_vocab_size >= 0 and self.bigram_vocab_size != 1, "bigram_vocab_size",
                    "must be 0 (off) or >= 2", self.bigram_vocab_size)
        check_field(self.bigram_dim >= 1, "bigram_dim", "must be >= 1", self.bigram_dim)
        check_field(self.bigram_hash in ("xor", "mul92821"), "bigram_hash", "must be xor or mul92821", self.bigram_hash)
        check_field(self.proj_init in ("zero", "scaled"), "proj_init", "must be zero or scaled", self.proj_init)
        check_field(self.ortho_init or not self.ortho_init_banked, "ortho_init_banked",
                    "needs ORTHO_INIT=1 (it widens the orthogonal init to every bank slice)", self.ortho_init_banked)
        n_cores = self.unique_layers or self.num_layers
        check_field(0 <= self.xsa_last_n <= n_cores, "xsa_last_n", f"must be in [0, {n_cores}] (layers or cores)",
                    self.xsa_last_n)
        check_field(self.rope_dims == 0 or (0 < self.rope_dims <= self.model_dim // max(self.num_heads, 1)
                                            and self.rope_dims % 2 == 0), "rope_dims",
                    "must be 0 (all) or an even number <= head_dim", self.rope_dims)
        check_field(self.rope_train_seq_len >= 0, "rope_train_seq_len", "must be >= 0", self.rope_train_seq_len)
        check_field(self.ve_dim >= 1, "ve_dim", "must be >= 1", self.ve_dim)
        if self.ve_enabled:
            check_field(len(self.ve_layers) > 0 and all(0 <= i < self.num_layers for i in self.ve_layers), "ve_layers",
                   f"needs layers in [0, NUM_LAYERS={self.num_layers})", self.ve_layers)
        check_field(self.attn_gate in ("none", "headwise", "g1", "output", "sparse"), "attn_gate",
                    "must be none, headwise, g1, output or sparse", self.attn_gate)
        check_field(self.num_loops >= 0, "num_loops", "must be >= 0", self.num_loops)
        if self.num_loops:
            check_field(0 <= self.loop_start <= self.loop_end < self.num_layers, "loop_end",
                   f"need 0 <= LOOP_START={self.loop_start} <= LOOP_END < NUM_LAYERS={self.num_layers}",
                   self.loop_end)
        check_field(all(0 <= i < self.num_layers for i in self.recur_layers), "recur_layers",
                    f"layers must be in [0, NUM_LAYERS={self.num_layers})", self.recur_layers)
        check_field(not (self.num_loops and self.recur_layers), "recur_layers",
                    "use either NUM_LOOPS (+LOOP_START/LOOP_END) or RECUR_LAYERS, not both", self.recur_layers)
        check_field(0 <= self.unique_layers <= self.num_layers, "unique_layers",
                    f"must be in [0, NUM_LAYERS={self.num_layers}]", self.unique_layers)
        check_field(self.skip_sizing in ("virtual", "physical"), "skip_sizing", "must be virtual or physical",
                    self.skip_sizing)
        check_field(self.parallel_residual in ("none", "two_lane", "gptj", "routed", "merge"), "parallel_residual",
                    "must be none, two_lane, gptj, routed or merge", self.parallel_residual)
        check_field(0 <= self.parallel_start_layer < self.num_layers, "parallel_start_layer",
                    f"must be in [0, NUM_LAYERS={self.num_layers})", self.parallel_start_layer)
        check_field(self.parallel_final_lane in ("mean", "attn", "mlp"), "parallel_final_lane",
                    "must be mean, attn or mlp", self.parallel_final_lane)
        if self.disable_layer0_attn:
            check_field(not (self.ve_enabled and 0 in self.ve_layers), "ve_layers",
                   "must not include layer 0 with DISABLE_LAYER0_ATTN=1 (layer 0 has no attention)", self.ve_layers)
            check_field(not self.unique_layers or self.unique_layers == self.num_layers, "unique_layers",
                   "cannot share cores with DISABLE_LAYER0_ATTN=1 (core 0 would lose attention in every layer "
                   "that reuses it)", self.unique_layers)

    @property
    def head_dim(self) -> int:
        return self.model_dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.mlp_mult * self.model_dim)
