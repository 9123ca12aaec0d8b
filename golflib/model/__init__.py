"""Model: the challenge GPT and its layers."""

from golflib._facade import lazy_exports

# the facade: each public name is imported from its module on first use (golflib._facade)
__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "attention": ("attention_backend", "causal_attention", "exclusive_self_attention"),
    "blocks": ("Block", "CausalSelfAttention", "MLP", "AttentionGate"),
    "embed": ("SmearGate", "BigramHash", "ValueEmbedding"),
    "gpt": ("GPT", "count_params"),
    "layers": ("RMSNorm", "CastedLinear", "Rotary", "rms_norm"),
    "recurrence": ("virtual_layers", "encoder_decoder"),
    "registry": ("build_model",),
})
