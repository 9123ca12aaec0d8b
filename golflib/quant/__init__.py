"""Quantization and the artifact (SPEC §2.8, §3.B).

intn (int-k codes) · clip (SDClip, Hessian SDClip, percentile, search) · fake_quant (STE for QAT) · classes (tensor
classes and per-class policy) · calib (Hessians from forward hooks; train or AR data) · gptq · lqer · mixed (the
records' export) · int8 (the baseline export) · prune (±1 pruning, decimal byte targets) · codecs (byte codecs) ·
entropy (context range coder) · bitpack · artifact (pickle-free container) · budget · report · export ·
posttrain (the export at the end of a training run).
"""

from golflib._facade import lazy_exports

# the facade: each public name is imported from its module on first use (golflib._facade)
__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "artifact": ("ArtifactError", "encode_artifact", "decode_artifact", "write_artifact", "read_artifact"),
    "budget": ("artifact_budget", "budget_report"),
    "calib": ("HessianCollector", "collect_hessians"),
    "classes": ("ClassPolicy", "class_policies", "tensor_class"),
    "clip": ("ClipRule", "parse_clip_rule", "row_scales"),
    "codecs": ("CodecError", "compress", "decompress", "byte_shuffle", "byte_unshuffle"),
    "entropy": ("EntropyCoder", "EntropyError", "order0_bound_bytes"),
    "export": ("ExportInfo", "export_int8", "export_mixed", "load_artifact_state", "load_artifact_model"),
    "fake_quant": ("quantize_dequantize", "set_late_qat"),
    "gptq": ("gptq_quantize", "gptq_search"),
    "int8": ("QuantizedState", "quantize_int8", "dequantize"),
    "intn": ("quantize_rows", "dequantize_rows", "quantize_tensor"),
    "lqer": ("svd_factors", "select_top_k"),
    "mixed": ("quantize_mixed",),
    "posttrain": ("ExportContext", "mixed_export"),
    "preflight": ("preflight_budget",),
    "prune": ("PruneTargetError", "magnitude_prune", "prune_to_target"),
    "report": ("codec_report", "tensor_errors"),
})
