"""Export a text corpus to the challenge's layout: tokenizer + shards + manifest (SPEC §1.2, §1.5).

``prepare_dataset("data")`` turns the embedded corpus into::

    data/tokenizers/wikivital_1024_bpe.model (+ .vocab)
    data/datasets/wikivital_sp1024/wikivital_val_000000.bin
    data/datasets/wikivital_sp1024/wikivital_train_000000.bin ...
    data/manifest.json

Each document is written as ``[BOS] + encode(text)`` with no EOS; the validation documents come first in their own
shard(s), train documents after, never mixed in one file. The tokenizer is trained on the train documents only.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from golflib.data import caseops as caseops_mod
from golflib.data.caseops import TRANSFORM_NAME as TRANSFORM
from golflib.data.corpus import Document, load_corpus, split_docs
from golflib.data.luts import build_sentencepiece_luts, count_stream_bytes, load_sentencepiece
from golflib.data.shards import write_shard
from golflib.data.tokcheck import MANIFEST_NAME, file_sha256, read_manifest
from golflib.data.tokenizer import OFFICIAL_SP_SETTINGS, canonical_texts, train_sentencepiece

PREPARE_VERSION = 2  # 2: documents in SentencePiece normal form before tokenization (canonical_texts)


def recommended_bigram_vocab_size(vocab_size: int) -> int:
    """The exporter's hint for BigramHash buckets: ``ceil(V/128)*128*5``."""
    return math.ceil(vocab_size / 128) * 128 * 5


def _encode_docs(sp, docs: Sequence[Document], bos_id: int, desc: str, batch: int = 512) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    with tqdm(total=len(docs), desc=desc, unit="doc", leave=False, mininterval=1.0) as bar:
        for i in range(0, len(docs), batch):
            chunk = docs[i:i + batch]
            for ids in sp.encode([d.text for d in chunk], out_type=int):
                arr = np.empty(len(ids) + 1, dtype=np.int32)
                arr[0] = bos_id
                arr[1:] = ids
                out.append(arr)
            bar.update(len(chunk))
    return out


def _encode_docs_caseops(sp, docs: Sequence[Document], bos_id: int, desc: str, *, sidecar: bool) -> \
        tuple[list[np.ndarray], list[np.ndarray] | None]:
    """``[BOS] + encode(caseops.encode(text))`` per document and, with ``sidecar``, the aligned per-token original
    UTF-8 byte counts (BOS 0, operators 0; SPEC §1.4 CaseOps sidecar) from the pieces' surface spans."""
    toks: list[np.ndarray] = []
    counts: list[np.ndarray] | None = [] if sidecar else None
    for d in tqdm(docs, desc=desc, unit="doc", leave=False, mininterval=1.0):
        proto = sp.encode_as_proto(caseops_mod.encode(d.text))
        toks.append(np.asarray([bos_id] + [p.id for p in proto.pieces], dtype=np.int32))
        if counts is not None:
            counts.append(np.asarray([0] + caseops_mod.original_byte_counts(p.surface for p in proto.pieces),
                                     dtype=np.int32))
    return toks, counts


def _write_split(encoded: list[np.ndarray], out_dir: Path, prefix: str, split: str, shard_size: int) -> tuple[int, int]:
    """Concatenate documents into shards of at most ``shard_size`` tokens; returns (files, tokens)."""
    files = tokens = 0
    buf: list[np.ndarray] = []
    fill = 0

    def flush() -> None:
        nonlocal files, fill, buf
        if fill:
            write_shard(out_dir / f"{prefix}_{split}_{files:06d}.bin", np.concatenate(buf))
            files += 1
            buf, fill = [], 0

    for doc in encoded:
        pos = 0
        while pos < doc.size:  # a document longer than a shard spills into the next one, like the exporter
            take = min(doc.size - pos, shard_size - fill)
            buf.append(doc[pos:pos + take])
            fill += take
            pos += take
            tokens += take
            if fill == shard_size:
                flush()
    flush()
    return files, tokens


def _settings_key(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def load_manifest(root: str | os.PathLike) -> dict[str, Any]:
    """Read ``<root>/manifest.json``; raises ``FileNotFoundError``/``ValueError`` naming the file."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest; run `golf data prepare` or `golf data fetch` first")
    return read_manifest(path)


def find_dataset(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    for entry in manifest.get("datasets", []):
        if entry.get("name") == name:
            return entry
    names = [e.get("name") for e in manifest.get("datasets", [])]
    raise KeyError(f"dataset {name!r} not in manifest (has: {names})")


def _merge_entry(items: list[dict[str, Any]], entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in items if e.get("name") != entry["name"]] + [entry]


def prepare_dataset(root: str | os.PathLike = "data", corpus: str = "embedded", vocab_size: int = 1024,
                    val_fraction: float = 0.05, shard_size: int = 10**8, force: bool = False,
                    trainer_overrides: dict[str, Any] | None = None, caseops: bool = False) -> dict[str, Any]:
    """Tokenize ``corpus`` into shards under ``root`` and write/merge the manifest; returns the dataset entry.

    Skips all work when the manifest already holds this dataset built with identical settings and every file
    exists (``force=True`` rebuilds). The split is drawn on the raw text; then every document is put in
    SentencePiece's normal form for the trainer settings (:func:`golflib.data.tokenizer.canonical_texts`: NFKC,
    whitespace runs collapsed), which is what the tokenizer would see anyway — so every tokenization of the corpus
    (sp1024, CaseOps, another vocab) scores the same bytes, the canonical documents' UTF-8 bytes. Stats recorded:
    docs/tokens/files per split, ``bytes_val`` (Σ bytes over every val target by the SPEC §1.4 LUT rule),
    ``utf8_bytes_val`` (UTF-8 bytes of the canonical val documents), ``raw_utf8_bytes_val`` (of the raw ones, before
    normalization) and ``decoded_utf8_bytes_val`` (of the val documents decoded from their tokens);
    ``bytes_val``, ``utf8_bytes_val`` and ``decoded_utf8_bytes_val`` agree (for CaseOps through the sidecar).

    ``caseops=True`` (#1729, SPEC §3.F3): every document goes through :func:`golflib.data.caseops.encode` first,
    the tokenizer is trained on the transformed train documents with the four operators as user-defined symbols
    (#1855's tokenizer: the official settings, NFKC included, plus those symbols), and the val split gets its byte
    sidecar ``<corpus>_val_bytes_NNNNNN.bin`` (same header, one uint16 per val token: the original UTF-8 bytes it
    accounts for; BOS and operators 0), cut at the same shard boundaries and named in the manifest
    (``val_bytes_glob``; the tokenizer entry carries ``text_transform``). Then ``bytes_val`` is the sidecar's total,
    and ``sidecar_unaccounted_bytes_val`` the raw bytes no piece covers (a document's leading/trailing whitespace,
    which the tokenizer drops).
    """
    root = Path(root)
    corpus_name, docs, license_note = load_corpus(corpus)
    suffix = "_caseops" if caseops else ""
    dataset_name = f"{corpus_name}_sp{vocab_size}{suffix}"
    tokenizer_name = f"{corpus_name}_{vocab_size}_bpe{suffix}"
    if caseops:
        trainer_overrides = {**(trainer_overrides or {}),
                             "user_defined_symbols": list(caseops_mod.OPERATORS)}
    settings = {"prepare_version": PREPARE_VERSION, "corpus": corpus, "vocab_size": vocab_size,
                "val_fraction": val_fraction, "shard_size": shard_size, "n_docs": len(docs),
                "docs_sha256": hashlib.sha256("\x00".join(d.text for d in docs).encode()).hexdigest(),
                "trainer_overrides": trainer_overrides or {}, "text_transform": TRANSFORM if caseops else "identity"}
    key = _settings_key(settings)
    manifest_path = root / MANIFEST_NAME
    manifest: dict[str, Any] = {}
    if manifest_path.is_file():
        manifest = load_manifest(root)
        if not force:
            try:
                entry = find_dataset(manifest, dataset_name)
            except KeyError:
                entry = None
            if entry and entry.get("prepare_key") == key and _files_present(root, entry, manifest):
                return entry

    train_docs, val_docs = split_docs(docs, val_fraction)  # (split on the raw text)
    raw_utf8_val = sum(len(d.text.encode("utf-8")) for d in val_docs)
    # Every tokenizer normalizes its input; storing the documents in that normal form first makes the bytes any
    # tokenization scores (LUT rule or CaseOps sidecar) the documents' own UTF-8 bytes (issue 12).
    train_docs, val_docs = ([Document(d.doc_id, t) for d, t in zip(ds, canonical_texts([d.text for d in ds],
                                                                                       trainer_overrides))]
                            for ds in (train_docs, val_docs))
    tok_dir = root / "tokenizers"
    texts = [caseops_mod.encode(d.text) if caseops else d.text for d in train_docs]
    model_path = train_sentencepiece(texts, tok_dir / tokenizer_name, vocab_size, trainer_overrides)
    sp = load_sentencepiece(model_path)
    bos_id, eos_id = int(sp.bos_id()), int(sp.eos_id())
    if bos_id < 0:
        raise ValueError(f"{model_path}: tokenizer has no BOS id; SPEC §1.2 needs BOS=1")

    out_dir = root / "datasets" / dataset_name
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in list(out_dir.glob(f"{corpus_name}_train_*.bin")) + list(out_dir.glob(f"{corpus_name}_val_*.bin")):
        stale.unlink()  # (the val glob also takes old sidecars)
    side_val = None
    if caseops:
        enc_val, side_val = _encode_docs_caseops(sp, val_docs, bos_id, "encode val", sidecar=True)
        enc_train, _ = _encode_docs_caseops(sp, train_docs, bos_id, "encode train", sidecar=False)
    else:
        enc_val = _encode_docs(sp, val_docs, bos_id, "encode val")
        enc_train = _encode_docs(sp, train_docs, bos_id, "encode train")
    files_val, tokens_val = _write_split(enc_val, out_dir, corpus_name, "val", shard_size)
    files_train, tokens_train = _write_split(enc_train, out_dir, corpus_name, "train", shard_size)

    luts = build_sentencepiece_luts(sp, vocab_size, transformed_ok=True)  # the CaseOps LUT count is a stat
    val_stream = np.concatenate(enc_val)
    bytes_val = count_stream_bytes(val_stream, luts)
    utf8_val = sum(len(d.text.encode("utf-8")) for d in val_docs)
    decoded = sp.decode([e[1:].tolist() for e in enc_val])
    if caseops:
        decoded = [caseops_mod.decode(t) for t in decoded]
    decoded_val = sum(len(t.encode("utf-8")) for t in decoded)
    extra_stats: dict[str, Any] = {}
    if side_val is not None:
        files_side, _ = _write_split(side_val, out_dir, corpus_name, "val_bytes", shard_size)
        if files_side != files_val:  # same lengths, same cuts: a bug if not
            raise RuntimeError(f"{out_dir}: {files_side} sidecar shards for {files_val} val shards")
        side_total = int(np.concatenate(side_val).sum())
        extra_stats = {"bytes_val_lut": bytes_val, "sidecar_unaccounted_bytes_val": utf8_val - side_total}
        bytes_val = side_total

    rel = lambda p: Path(os.path.relpath(p, root)).as_posix()  # noqa: E731
    tok_entry = {
        "name": tokenizer_name, "kind": "sentencepiece_bpe", "vocab_size": int(sp.vocab_size()),
        "bos_id": bos_id, "eos_id": eos_id, "recommended_bigram_vocab_size": recommended_bigram_vocab_size(vocab_size),
        "source_spec": {"name": tokenizer_name, "kind": "sentencepiece_bpe", "vocab_size": vocab_size,
                        "trainer_settings": OFFICIAL_SP_SETTINGS, "trainer_overrides": trainer_overrides or {},
                        "trained_on": "train documents only"},
        "model_path": rel(model_path), "vocab_path": rel(model_path.with_suffix(".vocab")),
        "model_sha256": file_sha256(model_path),
        "text_transform": TRANSFORM if caseops else "identity",
    }
    ds_entry = {
        "name": dataset_name, "tokenizer_name": tokenizer_name, "tokenizer_kind": "sentencepiece_bpe",
        "path": rel(out_dir), "train_glob": rel(out_dir / f"{corpus_name}_train_*.bin"),
        "val_glob": rel(out_dir / f"{corpus_name}_val_*.bin"), "vocab_size": vocab_size, "bos_id": bos_id,
        "eos_id": eos_id, "recommended_bigram_vocab_size": recommended_bigram_vocab_size(vocab_size),
        "stats": {
            "docs_total": len(docs), "docs_val": len(val_docs), "docs_train": len(train_docs),
            "files_total": files_val + files_train, "files_val": files_val, "files_train": files_train,
            "tokens_total": tokens_val + tokens_train, "tokens_val": tokens_val, "tokens_train": tokens_train,
            "bytes_val": bytes_val, "utf8_bytes_val": utf8_val, "decoded_utf8_bytes_val": decoded_val,
            "raw_utf8_bytes_val": raw_utf8_val,
            **extra_stats,
        },
        "split": {"rule": "sha256(salt + NUL + text) as [0,1) < val_fraction", "salt": "golflib-split-v1",
                  "val_fraction": val_fraction, "order": "val docs first (own shards), then train; title order"},
        "corpus": corpus, "license": license_note, "prepare_key": key, "prepare_settings": settings,
    }
    if caseops:
        ds_entry["val_bytes_glob"] = rel(out_dir / f"{corpus_name}_val_bytes_*.bin")
        ds_entry["text_transform"] = TRANSFORM
    manifest.setdefault("version", "golflib-1")
    manifest.setdefault("shard_size", shard_size)
    manifest.setdefault("append_eos", False)
    manifest["tokenizers"] = _merge_entry(manifest.get("tokenizers", []), tok_entry)
    manifest["datasets"] = _merge_entry(manifest.get("datasets", []), ds_entry)
    root.mkdir(parents=True, exist_ok=True)
    tmp = manifest_path.with_name(MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, manifest_path)
    return ds_entry


def _files_present(root: Path, entry: dict[str, Any], manifest: dict[str, Any]) -> bool:
    import glob

    stats = entry.get("stats", {})
    n_val = len([f for f in glob.glob(str(root / entry["val_glob"])) if "_bytes_" not in Path(f).name])
    if entry.get("val_bytes_glob") and len(glob.glob(str(root / entry["val_bytes_glob"]))) != stats.get("files_val"):
        return False
    n_train = len(glob.glob(str(root / entry["train_glob"])))
    tok = next((t for t in manifest.get("tokenizers", []) if t.get("name") == entry.get("tokenizer_name")), None)
    return (tok is not None and (root / tok["model_path"]).is_file() and n_val == stats.get("files_val")
            and n_train == stats.get("files_train"))


def dataset_paths(root: str | os.PathLike, dataset: str) -> tuple[Path, Path]:
    """``(data_path, tokenizer_path)`` of a dataset listed in ``<root>/manifest.json``."""
    root = Path(root)
    manifest = load_manifest(root)
    entry = find_dataset(manifest, dataset)
    tok = next((t for t in manifest.get("tokenizers", []) if t.get("name") == entry["tokenizer_name"]), None)
    if tok is None:
        raise KeyError(f"{root / MANIFEST_NAME}: tokenizer {entry['tokenizer_name']!r} of dataset {dataset!r} missing")
    return root / entry["path"], root / tok.get("model_path", tok.get("path", ""))
