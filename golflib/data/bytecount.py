"""What each scored target counts in val_bpb's denominator: the SentencePiece byte LUTs or a CaseOps byte sidecar.

A SentencePiece dataset counts bytes by the SPEC §1.4 LUT rule (:class:`golflib.data.luts.ByteLUTs`,
from the token ids). A CaseOps dataset (#1729, SPEC §3.F3) cannot: its tokens spell the *transformed*
text, so the LUTs would count each case operator as 3 bytes. Its exporter writes a per-token sidecar of original
UTF-8 bytes instead (``*_val_bytes_*.bin``, aligned one to one with the val token shards), and target ``i`` — the
prediction of ``val_tokens[i + 1]`` — counts ``sidecar[i + 1]`` bytes, as #1855's ``eval_val`` and TTT do.

Both counters answer ``target_bytes(prev_ids, tgt_ids, positions)``; every scoring protocol passes the target
positions it scored, so the same protocol code is exact on both kinds of dataset, on every rank.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

import numpy as np
import torch

from golflib.data.loader import count_shard_tokens, load_val_byte_sidecar
from golflib.data.luts import ByteLUTs, build_sentencepiece_luts

SIDECAR_MARKER = "val_bpb:byte_sidecar:enabled"  # the records' log line when bytes come from the sidecar


@dataclass(frozen=True)
class ByteSidecar:
    """Original UTF-8 bytes per val token (CaseOps, #1729): ``per_token`` int32 ``[n_tokens]`` over the whole val
    split (BOS and case operators 0); ``source`` names the sidecar glob. Target ``i`` counts
    ``per_token[i + 1]``. A truncated val stream (any eval length, ``VAL_MAX_TOKENS``) is a prefix of the split,
    so one sidecar serves every protocol."""

    per_token: torch.Tensor
    source: str = ""

    def to(self, device: torch.device | str) -> "ByteSidecar":
        return ByteSidecar(self.per_token.to(device), self.source)

    def target_bytes(self, prev_ids: torch.Tensor, tgt_ids: torch.Tensor, positions=None) -> torch.Tensor:
        """int64 bytes of the targets at ``positions`` (target indices, numpy or torch, any shape; the ids are
        not needed). Raises ``ValueError`` without positions or for a position the sidecar does not cover."""
        if positions is None:
            raise ValueError("a CaseOps byte sidecar counts bytes by target position; the protocol passed none")
        if not torch.is_tensor(positions):  # host positions (every protocol's): checked before any transfer
            positions = np.asarray(positions, dtype=np.int64)
            if positions.size and int(positions.max()) + 1 >= self.per_token.numel():
                raise ValueError(f"byte sidecar {self.source}: target position {int(positions.max())} is past its "
                                 f"{self.per_token.numel():,} entries")
        pos = torch.as_tensor(positions, dtype=torch.int64, device=self.per_token.device).reshape(-1) + 1
        return self.per_token[pos].to(torch.int64)

    def stream_bytes(self, tokens) -> int:
        """Σ bytes over every target of the val stream ``tokens`` (a prefix of the split; ``[n_targets + 1]``)."""
        n = len(tokens)
        self.check_stream(n)
        return int(self.per_token[1:n].to(torch.int64).sum())

    def check_stream(self, n_tokens: int) -> None:
        """Raise ``ValueError`` unless the sidecar covers a val stream of ``n_tokens`` tokens."""
        if n_tokens > self.per_token.numel():
            raise ValueError(f"byte sidecar {self.source}: {self.per_token.numel():,} entries for a val stream of "
                             f"{n_tokens:,} tokens; it must cover every scored target")


ByteCounter = ByteLUTs | ByteSidecar


def sidecar_glob(data) -> str:
    """The byte-sidecar glob of a :class:`golflib.settings.training.DataConfig`: ``VAL_BYTES_FILES`` or, empty,
    ``<DATA_PATH>/*_val_bytes_*.bin``."""
    return data.val_bytes_files or os.path.join(data.data_path, "*_val_bytes_*.bin")


def load_byte_counter(data, vocab_size: int, bos_id: int = 1) -> ByteCounter:
    """The byte counter for scoring the val split of ``data`` (a ``DataConfig``): a :class:`ByteSidecar` when the
    dataset has sidecar files (they are always used: LUT bytes would count the transformed text), else the
    tokenizer's :class:`ByteLUTs`. Either way the tokenizer is first checked against the dataset's manifest entry
    and the val shards' token ids (:func:`golflib.data.tokcheck.check_tokenizer`, raising
    :class:`~golflib.errors.TokenizerError`).

    ``CASEOPS_ENABLED=1`` (#1855's switch) makes the sidecar mandatory. Raises ``FileNotFoundError`` when it is
    required and absent, ``ValueError`` (from :func:`golflib.data.loader.load_val_byte_sidecar`) when its files
    do not match the val token shards one to one (count, lengths, BOS zeros)."""
    from golflib.data.luts import load_sentencepiece
    from golflib.data.tokcheck import check_tokenizer

    pattern = sidecar_glob(data)
    has_sidecar = bool(glob.glob(pattern))
    if data.caseops_enabled and not has_sidecar:
        raise FileNotFoundError(f"CASEOPS_ENABLED=1 but no byte sidecar matches {pattern!r}; prepare the data with "
                                "`golf data prepare --caseops` (or fetch a CaseOps dataset with its sidecars)")
    sp = load_sentencepiece(data.tokenizer_path)
    check_tokenizer(data, sp)
    if has_sidecar:
        n = count_shard_tokens(data.val_glob)
        side = load_val_byte_sidecar(data.val_glob, pattern, n, bos_id=bos_id)
        return ByteSidecar(side.to(torch.int32), pattern)
    return build_sentencepiece_luts(sp, vocab_size)


def is_sidecar(counter: ByteCounter) -> bool:
    return isinstance(counter, ByteSidecar)


def sidecar_text_audit(tokens, counter: ByteSidecar, sp, decode_text, bos_id: int = 1,
                       last_complete: bool = True) -> dict:
    """Check the sidecar against the decoded original text: split the val stream ``tokens`` (int ``[n]``) at BOS,
    decode every document with SentencePiece ``sp`` and the inverse transform ``decode_text`` (e.g.
    :func:`golflib.data.caseops.decode`), and compare its UTF-8 length with the sidecar entries of its tokens.

    Returns ``{"docs", "sidecar_bytes", "decoded_bytes", "mismatched_docs", "first_mismatch", "ok"}`` (bytes over
    the documents compared). ``last_complete=False`` (a stream cut by ``VAL_MAX_TOKENS``) leaves the last document
    out: cut inside a byte-fallback sequence, its decoded text would hold a replacement character the sidecar
    rightly does not count."""
    t = np.asarray(tokens, dtype=np.int64)
    counter.check_stream(t.size)
    side = counter.per_token[:t.size].cpu().numpy().astype(np.int64)
    starts = np.flatnonzero(t == bos_id).tolist()
    if not starts or starts[0] != 0:
        starts = [0] + starts
    bounds = list(zip(starts, starts[1:] + [t.size]))
    if not last_complete and len(bounds) > 1:
        bounds = bounds[:-1]
    texts = sp.decode([[int(i) for i in t[a:b] if i != bos_id] for a, b in bounds])
    side_total = dec_total = bad = 0
    first = None
    for (a, b), text in zip(bounds, texts):
        n_dec, n_side = len(decode_text(text).encode("utf-8")), int(side[a:b].sum())
        side_total, dec_total = side_total + n_side, dec_total + n_dec
        if n_dec != n_side:
            bad += 1
            first = first or {"doc_start": a, "sidecar_bytes": n_side, "decoded_bytes": n_dec}
    return {"docs": len(bounds), "sidecar_bytes": side_total, "decoded_bytes": dec_total, "mismatched_docs": bad,
            "first_mismatch": first, "ok": bad == 0}


def sidecar_path_note(counter: ByteSidecar) -> str:
    """The log line of a sidecar-scored run: the records' marker, the sidecar's file and entry counts, its glob."""
    n_files = len(glob.glob(counter.source))
    return f"{SIDECAR_MARKER} files:{n_files} entries:{counter.per_token.numel()} pattern={counter.source}"
