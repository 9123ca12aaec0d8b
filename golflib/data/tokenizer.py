"""SentencePiece BPE training with the challenge's official trainer settings (SPEC §1.3).

Workbook-only (not part of the training core a submission ships): the training core only *loads* a tokenizer
(:mod:`golflib.data.luts`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

OFFICIAL_SP_SETTINGS: dict[str, Any] = {
    "model_type": "bpe",
    "character_coverage": 0.999,
    "byte_fallback": True,
    "split_digits": True,
    "normalization_rule_name": "nmt_nfkc",
    "add_dummy_prefix": False,
    "pad_id": 0,
    "bos_id": 1,
    "eos_id": 2,
    "unk_id": 3,
    "hard_vocab_limit": False,
}


def train_sentencepiece(texts: Iterable[str], model_prefix: str | os.PathLike, vocab_size: int,
                        overrides: Mapping[str, Any] | None = None, *, num_threads: int | None = None) -> Path:
    """Train a SentencePiece BPE model on ``texts`` and return the path of ``<model_prefix>.model``.

    Uses :data:`OFFICIAL_SP_SETTINGS` (the exporter's ``build_sentencepiece_tokenizer``); ``overrides`` plays the
    role of the spec's ``trainer_overrides``. Texts get NUL replaced by a space and are stripped, as in the
    official exporter; empty texts are skipped. Existing ``.model``/``.vocab`` files at the prefix are replaced.
    Raises ``ValueError`` for a vocab size below 260 (256 byte pieces + 4 specials) or an empty corpus.
    """
    import sentencepiece as spm

    if vocab_size < 260:
        raise ValueError(f"vocab_size={vocab_size}: byte_fallback needs at least 260 ids (256 bytes + 4 specials)")
    prefix = Path(model_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".model", ".vocab"):
        p = prefix.with_name(prefix.name + suffix)
        if p.exists():
            p.unlink()

    cleaned = [t.replace("\x00", " ").strip() for t in texts]
    cleaned = [t for t in cleaned if t]
    if not cleaned:
        raise ValueError("tokenizer training corpus is empty")
    kwargs = dict(OFFICIAL_SP_SETTINGS)
    kwargs.update({
        "sentence_iterator": iter(cleaned),
        "model_prefix": str(prefix),
        "vocab_size": int(vocab_size),
        "num_threads": num_threads or max(1, os.cpu_count() or 1),
        "minloglevel": 2,
        # Wikipedia summaries run to a few KB; the default 4,192-byte sentence cap would silently drop the longest.
        "max_sentence_length": 1 << 16,
    })
    kwargs.update(overrides or {})
    spm.SentencePieceTrainer.train(**kwargs)
    model = prefix.with_name(prefix.name + ".model")
    if not model.is_file():
        raise RuntimeError(f"SentencePiece did not write {model}")
    return model


def canonical_texts(texts: Iterable[str], overrides: Mapping[str, Any] | None = None) -> list[str]:
    """``texts`` in SentencePiece's own normal form for the trainer settings (:data:`OFFICIAL_SP_SETTINGS` +
    ``overrides``): the normalization rule (``nmt_nfkc``: NFKC, control characters dropped, newlines and tabs to
    spaces) and ``remove_extra_whitespaces`` (runs collapsed, ends stripped), through
    ``sentencepiece.SentencePieceNormalizer``; no dummy prefix, spaces kept as spaces.

    A tokenizer trained with those settings normalizes its input the same way, so tokenizing a canonical text
    gives the same pieces, and the SPEC §1.4 LUT rule then counts exactly its UTF-8 bytes — as does a CaseOps byte
    sidecar of the same text. That is what lets two tokenizations of one corpus score the same bytes.
    """
    import sentencepiece as spm

    kw = {**OFFICIAL_SP_SETTINGS, **(overrides or {})}
    norm = spm.SentencePieceNormalizer(rule_name=kw.get("normalization_rule_name", "nmt_nfkc"),
                                       add_dummy_prefix=False, escape_whitespaces=False,
                                       remove_extra_whitespaces=bool(kw.get("remove_extra_whitespaces", True)))
    return [norm.normalize(t) for t in texts]
