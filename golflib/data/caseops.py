"""CaseOps (#1729, SPEC §3.F3): the lossless case transform the records since #1736 apply before SentencePiece.

Maximal runs of ASCII letters ``[A-Za-z]+`` are rewritten, everything else is kept:

* a lowercase run is unchanged;
* an all-uppercase run of length >= 2 becomes ``ALLCAPS`` + the run in lowercase;
* an uppercase letter followed by only lowercase letters (also a lone capital) becomes ``TITLE`` + lowercase;
* any other (mixed-case) run: ``TITLE`` when its first letter is uppercase, then the lowercase letters with
  ``CAPNEXT`` before each later uppercase one;
* a literal operator character in the text is escaped as ``ESC`` + the character.

The operators are the private-use characters U+E001 ``TITLE``, U+E002 ``ALLCAPS``, U+E003 ``CAPNEXT`` and U+E004
``ESC``, registered as SentencePiece user-defined symbols (the records' transform name
``lossless_caps_caseops_v1``). :func:`decode` inverts :func:`encode` exactly (``decode(encode(s)) == s`` for every
string) and refuses malformed text with :class:`CaseOpsError`.

Scoring counts *original* UTF-8 bytes (SPEC §1.4): every character of the transformed text other than an acting
operator stands for exactly one original character of the same UTF-8 length (a letter keeps its length when its
case changes; an escaped operator is itself), so :func:`original_byte_counts` is the sum of UTF-8 lengths minus the
operators — the per-token values of the val byte sidecar.
"""

from __future__ import annotations

import re
from typing import Iterable

from golflib.errors import GolfError

TITLE, ALLCAPS, CAPNEXT, ESC = "\ue001", "\ue002", "\ue003", "\ue004"
OPERATORS = (TITLE, ALLCAPS, CAPNEXT, ESC)
TRANSFORM_NAME = "lossless_caps_caseops_v1"

_RUNS = re.compile(r"[A-Za-z]+|[\ue001-\ue004]|[^A-Za-z\ue001-\ue004]+")


class CaseOpsError(GolfError):
    """A transformed string that no original text encodes to (a misplaced or dangling operator)."""


def _is_upper(ch: str) -> bool:
    return "A" <= ch <= "Z"


def _is_letter(ch: str) -> bool:
    return "a" <= ch <= "z" or "A" <= ch <= "Z"


def _encode_word(word: str) -> str:
    low = word.lower()
    if word == low:
        return word
    if len(word) >= 2 and word == word.upper():
        return ALLCAPS + low
    if _is_upper(word[0]) and word[1:] == low[1:]:
        return TITLE + low
    out = [TITLE] if _is_upper(word[0]) else []
    out.append(low[0])
    for orig, lc in zip(word[1:], low[1:]):
        if _is_upper(orig):
            out.append(CAPNEXT)
        out.append(lc)
    return "".join(out)


def encode(text: str) -> str:
    """The CaseOps form of ``text`` (module docstring); raises ``TypeError`` for a non-string."""
    if not isinstance(text, str):
        raise TypeError(f"caseops.encode: expected str, got {type(text).__name__}")
    out = []
    for m in _RUNS.finditer(text):
        piece = m.group()
        if _is_letter(piece[0]):
            out.append(_encode_word(piece))
        elif piece in OPERATORS:
            out.append(ESC + piece)
        else:
            out.append(piece)
    return "".join(out)


def decode(text: str) -> str:
    """The original text of a CaseOps string. Raises :class:`CaseOpsError` (naming the character offset) for an
    operator that is not followed by what it modifies: TITLE / ALLCAPS inside a word or not before a letter,
    CAPNEXT twice or not before a letter, ESC at the end."""
    out: list[str] = []
    escape = False
    mode: str | None = None  # TITLE or ALLCAPS waiting for the first letter of a word
    capnext = False
    in_word = allcaps = False
    for i, ch in enumerate(text):
        if escape:
            if mode is not None:
                raise CaseOpsError(f"offset {i}: an escaped character cannot follow {_name(mode)}")
            out.append(ch)
            escape = False
            in_word = _is_letter(ch)
            allcaps = allcaps and in_word
            continue
        if ch == ESC:
            escape = True
            continue
        if ch in (TITLE, ALLCAPS):
            if mode is not None or in_word or capnext:
                raise CaseOpsError(f"offset {i}: {_name(ch)} inside a word or after another operator")
            mode = ch
            continue
        if ch == CAPNEXT:
            if capnext:
                raise CaseOpsError(f"offset {i}: CAPNEXT twice")
            capnext = True
            continue
        if _is_letter(ch):
            if not in_word:  # a word starts
                up = mode is not None or capnext
                allcaps = mode == ALLCAPS
                mode, in_word = None, True
            else:
                if mode is not None:
                    raise CaseOpsError(f"offset {i}: {_name(mode)} inside a word")
                up = allcaps or capnext
            out.append(ch.upper() if up else ch)
            capnext = False
            continue
        if mode is not None or capnext:
            raise CaseOpsError(f"offset {i}: {_name(mode or CAPNEXT)} not followed by an ASCII letter")
        out.append(ch)
        in_word = allcaps = False
    if escape or mode is not None or capnext:
        raise CaseOpsError(f"offset {len(text)}: dangling {_name(ESC if escape else mode or CAPNEXT)} at the end")
    return "".join(out)


def _name(op: str) -> str:
    return {TITLE: "TITLE", ALLCAPS: "ALLCAPS", CAPNEXT: "CAPNEXT", ESC: "ESC"}[op]


def original_byte_counts(surfaces: Iterable[str]) -> list[int]:
    """Original UTF-8 bytes each piece of a CaseOps string accounts for (the val byte sidecar's values).

    ``surfaces``: the consecutive surface strings of the tokens (SentencePiece ``piece.surface``), whose
    concatenation is a CaseOps string. An acting operator counts 0, every other character its UTF-8 length (an
    ``ESC`` and the operator it escapes may sit in different pieces). Returns one int per piece; raises
    :class:`CaseOpsError` when the last piece ends inside an escape."""
    counts = []
    escape = False
    for surface in surfaces:
        n = 0
        for ch in surface:
            if escape:
                n += len(ch.encode("utf-8"))
                escape = False
            elif ch == ESC:
                escape = True
            elif ch not in OPERATORS:
                n += len(ch.encode("utf-8"))
        counts.append(n)
    if escape:
        raise CaseOpsError("dangling ESC at the end of the last piece")
    return counts


def original_text_decoder(sp):
    """The inverse text transform of SentencePiece tokenizer ``sp``: :func:`decode` for a CaseOps tokenizer (one
    with the case-operator pieces), else the identity."""
    pieces = {sp.id_to_piece(i) for i in range(int(sp.vocab_size()))}
    return decode if pieces & set(OPERATORS) else (lambda s: s)
