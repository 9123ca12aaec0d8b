"""A small deterministic dataset in the challenge layout, independent of any tokenizer training.

* ``tokenizers/fineweb_1024_bpe.model``: a SentencePiece BPE model assembled piece by piece (4 control/unknown
  pieces, 256 byte-fallback pieces ``<0xNN>``, then ``vocab - 260`` normal pieces, some with a leading ``▁`` and some
  with multi-byte UTF-8), so the byte LUTs of SPEC §1.4 have every case; nothing is trained, so the file is the same
  on every machine and sentencepiece version.
* ``datasets/fineweb10B_sp1024/fineweb_{train,val}_00000N.bin``: documents ``[BOS] + tokens`` from a fixed sparse
  Markov chain (Python's Mersenne Twister, stable across versions), lengths 16..700 so documents both fit inside and
  run across ``TRAIN_SEQ_LEN`` windows.

The names match the records' default globs (``fineweb_train_*.bin``) and golflib's (``*_train_*.bin``).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from golflib.data.shards import write_shard

BOS = 1
LETTERS = "abcdefghijklmnopqrstuvwxyz"
ACCENTED = "éüßøåñçœ"


def _normal_pieces(n: int) -> list[str]:
    """``n`` distinct piece strings: ``▁`` alone, then base-26 letter strings, alternately with a leading ``▁``,
    every 13th made of accented (2-byte UTF-8) letters."""
    out, seen, i = ["▁"], {"▁"}, 0
    while len(out) < n:
        k, s = i, ""
        while True:
            s = (ACCENTED if i % 13 == 5 else LETTERS)[k % (8 if i % 13 == 5 else 26)] + s
            k //= 8 if i % 13 == 5 else 26
            if k == 0:
                break
        piece = ("▁" + s) if i % 2 == 0 else s
        if piece not in seen:
            seen.add(piece)
            out.append(piece)
        i += 1
    return out


def write_tokenizer(path: Path, vocab_size: int = 1024) -> Path:
    """Write the assembled SentencePiece model (pad 0, bos 1, eos 2, unk 3, byte fallback) to ``path``."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    m = pb.ModelProto()
    ts = m.trainer_spec
    ts.model_type = pb.TrainerSpec.BPE
    ts.vocab_size = vocab_size
    ts.byte_fallback = True
    ts.pad_id, ts.bos_id, ts.eos_id, ts.unk_id = 0, 1, 2, 3
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = False
    P = pb.ModelProto.SentencePiece

    def add(piece: str, kind, score: float = 0.0) -> None:
        x = m.pieces.add()
        x.piece, x.type, x.score = piece, kind, score

    add("<pad>", P.CONTROL)
    add("<s>", P.CONTROL)
    add("</s>", P.CONTROL)
    add("<unk>", P.UNKNOWN)
    for b in range(256):
        add(f"<0x{b:02X}>", P.BYTE)
    for i, piece in enumerate(_normal_pieces(vocab_size - 260)):
        add(piece, P.NORMAL, -float(i))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(m.SerializeToString())
    return path


def markov_documents(n_tokens: int, vocab_size: int, seed: int) -> np.ndarray:
    """About ``n_tokens`` tokens of documents ``[BOS] + body`` (body ids in [4, vocab)): a sparse Markov chain
    (6 successors per token with probabilities .4/.2/.15/.1/.1/.05, and 10% uniform jumps)."""
    rng = random.Random(seed)
    table = random.Random(12345)  # the chain itself is the same for every split
    succ = [[table.randrange(4, vocab_size) for _ in range(6)] for _ in range(vocab_size)]
    cum = [0.4, 0.6, 0.75, 0.85, 0.95, 1.0]
    out: list[int] = []
    while len(out) < n_tokens:
        length = rng.randrange(16, 200) if rng.random() < 0.7 else rng.randrange(200, 700)
        out.append(BOS)
        tok = rng.randrange(4, vocab_size)
        for _ in range(length):
            out.append(tok)
            if rng.random() < 0.1:
                tok = rng.randrange(4, vocab_size)
            else:
                u = rng.random()
                tok = succ[tok][next(j for j, c in enumerate(cum) if u < c)]
    return np.asarray(out[:n_tokens], dtype=np.uint16)


def write_dataset(root: Path, vocab_size: int = 1024, train_tokens: tuple[int, ...] = (60_000, 60_000),
                  val_tokens: int = 12_289) -> dict:
    """Write tokenizer and shards under ``root``; returns ``{"data_path", "tokenizer_path", "root"}`` (strings)."""
    root = Path(root)
    data = root / "datasets" / f"fineweb10B_sp{vocab_size}"
    tok = write_tokenizer(root / "tokenizers" / f"fineweb_{vocab_size}_bpe.model", vocab_size)
    write_shard(data / "fineweb_val_000000.bin", markov_documents(val_tokens, vocab_size, seed=1))
    for i, n in enumerate(train_tokens):
        write_shard(data / f"fineweb_train_{i:06d}.bin", markov_documents(n, vocab_size, seed=100 + i))
    return {"root": str(root), "data_path": str(data), "tokenizer_path": str(tok)}
