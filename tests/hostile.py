"""Builders of hostile and broken inputs (issue 16), shared by tests/test_input_safety.py and the fuzz worker
(tests/fuzz_worker.py): legitimate tiny artifacts, shards, tokenizers, manifests and config files, and the surgery
that turns each into what a downloaded file could be — a bomb, a lying header, a wrong tokenizer."""

from __future__ import annotations

import dataclasses
import json
import shutil
import struct
import zlib
from pathlib import Path

import brotli
import numpy as np
import torch

from golflib.model.gpt import GPT
from golflib.quant.artifact import MAGIC
from golflib.quant.int8 import quantize_int8
from golflib.settings.model import ModelConfig
from golflib.settings.quant import QuantConfig

TINY_MODEL = ModelConfig(num_layers=2, model_dim=32, num_heads=2, num_kv_heads=2, vocab_size=64)
KEEP = 256  # KEEP_FLOAT_MAX_NUMEL: the 32-wide block matrices are quantized per row


def tiny_state(seed: int = 0):
    """``(model config, QuantizedState)`` of a random tiny GPT, int8 per row, its architecture in the metadata."""
    torch.manual_seed(seed)
    model = GPT(TINY_MODEL)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    qs = quantize_int8(model.state_dict(), QuantConfig(keep_float_max_numel=KEEP))
    qs.meta["model"] = dataclasses.asdict(TINY_MODEL)
    return TINY_MODEL, qs


def v1_raw_blob(compressed: bytes, codec: str = "zlib") -> bytes:
    """A version-1 container around payload bytes as given (already compressed, or not compressed at all)."""
    name = codec.encode("ascii")
    return MAGIC + struct.pack("<BB", 1, len(name)) + name + compressed


def zlib_bomb(raw: bytes, zeros: int) -> bytes:
    """``raw`` then ``zeros`` zero bytes, zlib-compressed in a stream (never holding the zeros in memory)."""
    c = zlib.compressobj(9)
    out = [c.compress(raw)]
    block = bytes(1 << 20)
    for _ in range(zeros >> 20):
        out.append(c.compress(block))
    out.append(c.flush())
    return b"".join(out)


def brotli_whitespace(prefix: bytes, spaces: int) -> bytes:
    """brotli of ``prefix`` followed by ``spaces`` spaces (valid JSON whitespace), streamed at quality 1."""
    c = brotli.Compressor(quality=1)
    out = [c.process(prefix)]
    block = b" " * (1 << 20)
    for _ in range(spaces >> 20):
        out.append(c.process(block))
    out.append(c.finish())
    return b"".join(out)


def split_v2(blob: bytes) -> tuple[dict, list[tuple[dict, bytes]]]:
    """A version-2 container's header (decoded) and its sections ``[(entry, bytes)]``."""
    (hlen,) = struct.unpack("<I", blob[5:9])
    header = json.loads(brotli.decompress(blob[9:9 + hlen]))
    pos, sections = 9 + hlen, []
    for s in header["sections"]:
        sections.append((s, blob[pos:pos + s["length"]]))
        pos += s["length"]
    return header, sections


def join_v2(header: dict, sections: list[tuple[dict, bytes]], *, fix_crc: bool = True,
            header_bytes: bytes | None = None) -> bytes:
    """Re-assemble a version-2 container after surgery (lengths and CRC-32s recomputed unless ``fix_crc=False``)."""
    entries = []
    for s, data in sections:
        s = dict(s)
        if fix_crc:
            s["length"], s["crc32"] = len(data), zlib.crc32(data)
        entries.append(s)
    header = {**header, "sections": entries}
    hb = header_bytes if header_bytes is not None else brotli.compress(json.dumps(header).encode(), quality=5)
    return MAGIC + struct.pack("<BI", 2, len(hb)) + hb + b"".join(d for _, d in sections)


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def write_shard_raw(path: Path, magic: int = 20240520, version: int = 1, num_tokens: int | None = None,
                    tokens: np.ndarray | None = None, extra: bytes = b"") -> Path:
    """A shard with any header words (for lying headers)."""
    tokens = np.zeros(0, np.uint16) if tokens is None else tokens.astype("<u2")
    header = np.zeros(256, "<i4")
    header[0], header[1], header[2] = magic, version, tokens.size if num_tokens is None else num_tokens
    path.write_bytes(header.tobytes() + tokens.tobytes() + extra)
    return path


def train_tokenizer(path_prefix: Path, vocab: int, seed_text: str) -> Path:
    """A real SentencePiece BPE model of ``vocab`` pieces trained on ``seed_text`` (the official trainer settings'
    special ids: pad 0, BOS 1, EOS 2, UNK 3; byte fallback off so small vocabularies train)."""
    import sentencepiece as spm

    path_prefix.parent.mkdir(parents=True, exist_ok=True)
    words = seed_text.split()
    lines = [" ".join(words[i:i + 60]) for i in range(0, len(words), 60)]  # under the trainer's sentence limit
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_prefix=str(path_prefix), vocab_size=vocab,
        model_type="bpe", pad_id=0, bos_id=1, eos_id=2, unk_id=3, hard_vocab_limit=False,
        character_coverage=1.0, minloglevel=2)
    return path_prefix.with_suffix(".model")


def copy_dataset(embedded: dict, dest: Path) -> dict:
    """A private copy of a prepared dataset (manifest, tokenizer, val shard and one train shard) to mutate."""
    root = Path(embedded["root"])
    shutil.copytree(root, dest)
    data_path = dest / Path(embedded["data_path"]).relative_to(root)
    tok = dest / Path(embedded["tokenizer_path"]).relative_to(root)
    return {"root": dest, "data_path": data_path, "tokenizer_path": tok,
            "manifest": dest / "manifest.json"}
