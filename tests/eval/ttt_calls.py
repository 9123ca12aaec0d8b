"""Keyword front ends for the TTT protocols in tests: each splits flat keywords into the protocol's settings
object and its :class:`ScoringContext`, so a test can state a protocol's settings in one dict (``CHUNK``,
``LORA``, ...). A keyword that is neither is a TypeError, as it would be for the functions themselves."""

import dataclasses

from golflib.eval.context import ScoringContext
from golflib.eval.ttt_chunked import ChunkedTTTSettings, eval_ttt_chunked
from golflib.eval.ttt_lora import LoRATTTSettings, eval_ttt_lora
from golflib.eval.ttt_phased import GlobalSGDSettings, PhasedTTTSettings, eval_ttt_phased

CTX = {f.name for f in dataclasses.fields(ScoringContext)}


def _take(cls, kw: dict) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: kw.pop(k) for k in list(kw) if k in names}


def _ctx(kw: dict) -> ScoringContext:
    return ScoringContext(**{k: kw.pop(k) for k in list(kw) if k in CTX})


def _done(kw: dict) -> None:
    if kw:
        raise TypeError(f"unexpected keyword(s): {', '.join(sorted(kw))}")


def run_chunked(model, toks, luts, **kw):
    ctx = _ctx(kw)
    settings = ChunkedTTTSettings(**_take(ChunkedTTTSettings, kw))
    _done(kw)
    return eval_ttt_chunked(model, toks, luts, settings, ctx)


def run_lora(model, toks, luts, **kw):
    ctx = _ctx(kw)
    extra = {k: kw.pop(k) for k in ("after_round", "mode") if k in kw}
    settings = LoRATTTSettings(**_take(LoRATTTSettings, kw))
    _done(kw)
    return eval_ttt_lora(model, toks, luts, settings, ctx, **extra)


def phased_settings(**kw) -> PhasedTTTSettings:
    g = {k.removeprefix("global_"): kw.pop(k) for k in list(kw) if k.startswith("global_")}
    outer = {k: kw.pop(k) for k in ("prefix_docs", "num_phases") if k in kw}
    lora = LoRATTTSettings(**_take(LoRATTTSettings, kw))
    _done(kw)
    return PhasedTTTSettings(lora=lora, global_sgd=GlobalSGDSettings(**g), **outer)


def run_phased(model, toks, luts, **kw):
    ctx = _ctx(kw)
    return eval_ttt_phased(model, toks, luts, phased_settings(**kw), ctx)
