"""Evaluation: exact val_bpb, standard and sliding-window protocols."""

from golflib._facade import lazy_exports

# the facade: each public name is imported from its module on first use (golflib._facade)
__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "bpb": ("EvalResult", "BPBAccumulator", "eval_standard", "nats_to_bpb", "unigram_bpb"),
    "context": ("ScoringContext",),
    "doc_eval": ("eval_doc_isolated",),
    "dump": ("ScoreDump", "load_dump", "emit"),
    "ledger": ("Ledger", "LegalityError", "check_distribution", "perturbation_test"),
    "ngram": ("NgramMixer", "mixer_from_config", "build_mixer"),
    "ngram_eval": ("eval_with_mixer", "run_configured_ngram"),
    "protocols": ("Protocol", "get_protocol", "run_standard", "run_sliding", "eval_window"),
    "scorer": ("Scorer",),
    "scorelog": ("score_lines",),
    "sliding": ("Window", "sliding_windows", "eval_sliding"),
    "ttt": ("run_configured_ttt", "run_ttt_kind", "ttt_settings"),
    "ttt_chunked": ("ChunkedTTTSettings", "eval_ttt_chunked"),
    "ttt_lora": ("LoRATTTSettings", "BatchedLoRA", "eval_ttt_lora"),
    "ttt_phased": ("PhasedTTTSettings", "GlobalSGDSettings", "eval_ttt_phased"),
})
