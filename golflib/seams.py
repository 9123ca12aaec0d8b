"""The optional modules of the training core: which config fields need which module (issue 13, part 5).

A bundled ``train_gpt.py`` (:mod:`golflib.record.bundle`) carries only the modules its baked config reaches:
:data:`OPTIONAL_MODULES` are imported lazily, inside the branch a config field opens, and :func:`modules_needed`
says which of them a config uses. The bundler leaves the others out (the bundle's importer refuses them with
``ModuleNotFoundError``, never taking them from an installed golflib) and records them in :data:`BUNDLE_EXCLUDED`; :func:`check_bundle_covers` then refuses, before any
training, a config (baked, environment or ``--set``) that needs a module the file does not carry. Run from the
package, nothing is excluded. Code bytes count toward the 16,000,000-byte limit (SPEC §0, §3.B13), so a record
does not pay for the protocols it does not run.
"""

from __future__ import annotations

# golflib modules a config may leave out, in the order their reasons are listed
OPTIONAL_MODULES = ("golflib.presets", "golflib.eval.ttt", "golflib.eval.ttt_chunked", "golflib.eval.ttt_lora",
                    "golflib.eval.ttt_phased", "golflib.eval.doc_eval", "golflib.eval.ngram_eval",
                    "golflib.quant.lqer", "golflib.quant.preflight", "golflib.quant.posttrain", "golflib.quant.calib",
                    "golflib.data.loaders", "golflib.plugins", "golflib.eval.dump", "golflib.quant.pergroup")
# set by golflib.record.bundle: the optional modules this train_gpt.py does not carry (empty in the package)
BUNDLE_EXCLUDED: tuple[str, ...] = ()


def modules_needed(cfg) -> dict[str, str]:
    """``{module: reason}`` of the optional modules a :class:`golflib.config.Config` reaches (``reason`` names the
    config field). ``golflib.presets`` is never needed here: a bundle without a baked config keeps every module;
    nor is ``golflib.eval.dump`` (score dumps are written only by the perturbation audit's replay, through the
    package)."""
    need: dict[str, str] = {}
    t = cfg.ttt
    kinds = tuple(t.ttt_kinds) if t.ttt_enabled else ()
    if kinds:
        need["golflib.eval.ttt"] = "TTT_ENABLED=1"
    if cfg.ngram.ngram_enabled:
        need["golflib.eval.ngram_eval"] = "NGRAM_ENABLED=1"
        need.setdefault("golflib.eval.ttt", "NGRAM_ENABLED=1 (its TTT protocols)")
    for kind, mods in (("chunked", ("golflib.eval.ttt_chunked",)), ("lora", ("golflib.eval.ttt_lora",)),
                       ("phased", ("golflib.eval.ttt_phased", "golflib.eval.ttt_lora", "golflib.eval.doc_eval"))):
        if kind in kinds:
            for m in mods:
                need.setdefault(m, f"TTT_KINDS includes {kind}")
    if cfg.eval.eval_doc_isolated:
        need.setdefault("golflib.eval.doc_eval", "EVAL_DOC_ISOLATED=1")
    if cfg.quant.mixed_export and cfg.quant.lqer_enabled:
        need["golflib.quant.lqer"] = "MIXED_EXPORT=1 and LQER_ENABLED=1"
    if cfg.train.preflight_budget:
        need["golflib.quant.preflight"] = "PREFLIGHT_BUDGET=1"
    if cfg.quant.mixed_export:
        need["golflib.quant.posttrain"] = "MIXED_EXPORT=1"
        need["golflib.quant.calib"] = "MIXED_EXPORT=1"
        if cfg.quant.gptq_enabled and cfg.quant.gptq_calib_loader == "shuffled":
            need["golflib.data.loaders"] = "GPTQ_CALIB_LOADER=shuffled"
    for field, codec in (("MIXED_CODEC", cfg.quant.mixed_codec if cfg.quant.mixed_export else ""),
                         ("ARTIFACT_CODEC", cfg.quant.artifact_codec)):
        if codec == "pergroup-lrzip":
            need.setdefault("golflib.quant.pergroup", f"{field}=pergroup-lrzip")
    if cfg.eval.eval_plugins or cfg.eval.eval_protocols:
        need["golflib.plugins"] = "EVAL_PLUGINS" if cfg.eval.eval_plugins else "EVAL_PROTOCOLS"
    if cfg.train.train_loader != "sequential":
        need["golflib.data.loaders"] = f"TRAIN_LOADER={cfg.train.train_loader}"
    return need


def check_bundle_covers(cfg) -> None:
    """Raise ``SystemExit`` naming the module and the field when ``cfg`` needs an optional module this bundled
    ``train_gpt.py`` left out (:data:`BUNDLE_EXCLUDED`); nothing to check run from the package."""
    missing = {m: why for m, why in modules_needed(cfg).items() if m in BUNDLE_EXCLUDED}
    if missing:
        listed = "; ".join(f"{m} ({why})" for m, why in missing.items())
        raise SystemExit(f"this train_gpt.py was bundled from a config that does not use {listed}, so it does not "
                         f"carry that code; bundle it again from this config (golf bundle / golf record)")
