"""Byte lookup tables for val_bpb (SPEC §1.4).

For a scored target ``y`` predicted after input token ``p``::

    bytes = base_bytes[y] + (has_leading_space[y] and not is_boundary[p])

``base_bytes`` is 0 for control/unknown/unused ids (boundary tokens, e.g. BOS), 1 for byte-fallback pieces
``<0xNN>``, else the UTF-8 length of the piece after dropping one leading "▁" (U+2581). The leading space is charged
only when the previous token is not a boundary token, matching SentencePiece decoding, which drops the space of the
first piece after BOS (``add_dummy_prefix=False`` exports never create one there anyway).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from golflib.errors import TokenizerError

SP_SPACE = "\u2581"


@dataclass(frozen=True)
class ByteLUTs:
    """Per-token-id tables, each of shape ``[table_size]`` with ``table_size = max(sp_vocab, vocab_size)``.

    base_bytes: int16 bytes of the piece without its leading space; has_leading_space: bool;
    is_boundary: bool (control/unknown/unused ids and padding ids beyond the SentencePiece vocab).
    """

    base_bytes: torch.Tensor
    has_leading_space: torch.Tensor
    is_boundary: torch.Tensor

    def to(self, device: torch.device | str) -> "ByteLUTs":
        return ByteLUTs(self.base_bytes.to(device), self.has_leading_space.to(device), self.is_boundary.to(device))

    def target_bytes(self, prev_ids: torch.Tensor, tgt_ids: torch.Tensor, positions=None) -> torch.Tensor:
        """Bytes charged for each target: int64 tensor shaped like ``tgt_ids`` (``prev_ids`` same shape).
        ``positions`` (the targets' stream indices) is accepted for the common byte-counter interface
        (:class:`golflib.data.bytecount.ByteSidecar` needs it) and not used: the LUT rule reads the ids."""
        b = self.base_bytes[tgt_ids].to(torch.int64)
        return b + (self.has_leading_space[tgt_ids] & ~self.is_boundary[prev_ids]).to(torch.int64)

    def stream_bytes(self, tokens) -> int:
        """Σ bytes over every target of a token stream (:func:`count_stream_bytes`)."""
        return count_stream_bytes(tokens, self)


def load_sentencepiece(path: str | os.PathLike):
    """Load a SentencePiece model; raises ``FileNotFoundError`` or :class:`~golflib.errors.TokenizerError` (a
    ``ValueError``) naming the path."""
    import sentencepiece as spm

    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"tokenizer model not found: {path}")
    if not path.endswith(".model"):
        raise TokenizerError(f"{path}: expected a SentencePiece .model file")
    try:
        sp = spm.SentencePieceProcessor(model_file=path)
    except Exception as e:  # noqa: BLE001 - sentencepiece raises RuntimeError / OSError with its own text
        raise TokenizerError(f"{path}: not a SentencePiece model ({type(e).__name__}: {str(e)[:200]})") from None
    if int(sp.vocab_size()) < 1:
        raise TokenizerError(f"{path}: a SentencePiece model without pieces")
    return sp


CASEOPS_PIECES = ("\ue001", "\ue002", "\ue003", "\ue004")  # TITLE, ALLCAPS, CAPNEXT, ESC (SPEC §3.F3)


def build_sentencepiece_luts(sp, vocab_size: int, *, transformed_ok: bool = False) -> ByteLUTs:
    """Build :class:`ByteLUTs` from a ``SentencePieceProcessor`` (or a path to a ``.model``).

    ``vocab_size`` is the model's embedding size; ids beyond the SentencePiece vocab are boundary tokens with 0
    bytes. Raises ``ValueError`` if the SentencePiece vocab is larger than ``vocab_size``, and for a CaseOps
    tokenizer (one with the case-operator pieces): its tokens spell transformed text, so these tables would count
    every operator as 3 bytes and its val_bpb needs the original-byte sidecar
    (:func:`golflib.data.bytecount.load_byte_counter`). ``transformed_ok=True`` builds them anyway (to measure
    that difference).
    """
    name = str(sp) if isinstance(sp, (str, os.PathLike)) else "tokenizer"
    if isinstance(sp, (str, os.PathLike)):
        sp = load_sentencepiece(sp)
    if not transformed_ok:
        ops = sorted({sp.id_to_piece(i) for i in range(int(sp.vocab_size()))} & set(CASEOPS_PIECES))
        if ops:
            raise ValueError(f"{name}: a CaseOps tokenizer (case-operator pieces {[hex(ord(p)) for p in ops]}); "
                             "byte LUTs would count transformed text. Score it through the val byte sidecar "
                             "(*_val_bytes_*.bin, `golf data prepare --caseops`)")
    sp_vocab = int(sp.vocab_size())
    if sp_vocab > vocab_size:
        raise ValueError(f"tokenizer has {sp_vocab} pieces but VOCAB_SIZE={vocab_size}; ids would overflow the "
                         "embedding")
    size = max(sp_vocab, vocab_size)
    base = np.zeros(size, dtype=np.int16)
    space = np.zeros(size, dtype=np.bool_)
    boundary = np.ones(size, dtype=np.bool_)
    for i in range(sp_vocab):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        boundary[i] = False
        if sp.is_byte(i):
            base[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith(SP_SPACE):
            space[i] = True
            piece = piece[1:]
        base[i] = len(piece.encode("utf-8"))
    return ByteLUTs(torch.from_numpy(base), torch.from_numpy(space), torch.from_numpy(boundary))


def count_stream_bytes(tokens: np.ndarray | torch.Tensor, luts: ByteLUTs) -> int:
    """Σ bytes over every target of a token stream (targets are ``tokens[1:]``, inputs ``tokens[:-1]``)."""
    t = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
    if t.numel() < 2:
        return 0
    return int(luts.target_bytes(t[:-1], t[1:]).sum())
