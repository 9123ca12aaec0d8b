"""`golf data prepare --caseops` (issue 12, part 2): the CaseOps tokenizer, shards and the val byte sidecar."""

from __future__ import annotations

import json

import numpy as np
import pytest

from golflib.data import caseops
from golflib.data.corpus import load_embedded_docs, split_docs
from golflib.data.loader import load_val_byte_sidecar, load_validation_tokens
from golflib.data.luts import load_sentencepiece
from golflib.data.prepare import dataset_paths, prepare_dataset
from golflib.data.shards import list_shards, load_shard, write_shard


def test_caseops_dataset_layout_and_manifest(caseops_data, embedded_data):
    root, entry, data_path, tok_path = caseops_data
    assert entry["name"] == "wikivital_sp1024_caseops" and entry["text_transform"] == caseops.TRANSFORM_NAME
    manifest = json.loads((root / "manifest.json").read_text())
    tok = next(t for t in manifest["tokenizers"] if t["name"] == entry["tokenizer_name"])
    assert tok["text_transform"] == caseops.TRANSFORM_NAME
    sp = load_sentencepiece(tok_path)
    assert [sp.piece_to_id(o) for o in caseops.OPERATORS] == [4, 5, 6, 7]  # user-defined, right after the specials
    val = list_shards(str(root / entry["val_glob"]))
    side = sorted(root.glob(entry["val_bytes_glob"]))
    assert len(val) == len(side) == entry["stats"]["files_val"] >= 1
    for v, s in zip(val, side):
        assert load_shard(v).size == load_shard(s).size
    # the same documents: the raw UTF-8 bytes are all accounted for, and CaseOps spends more tokens on them
    plain = embedded_data["entry"]["stats"]
    st = entry["stats"]
    assert st["docs_val"] == plain["docs_val"] and st["utf8_bytes_val"] == plain["utf8_bytes_val"]
    assert st["bytes_val"] == st["utf8_bytes_val"] and st["sidecar_unaccounted_bytes_val"] == 0
    assert st["decoded_utf8_bytes_val"] == plain["decoded_utf8_bytes_val"]  # NFKC, then the inverse transform
    assert st["tokens_val"] > 1.05 * plain["tokens_val"]


def test_sidecar_counts_each_documents_original_bytes(caseops_data):
    root, entry, data_path, tok_path = caseops_data
    toks = np.concatenate([np.asarray(load_shard(f)) for f in list_shards(str(root / entry["val_glob"]))])
    side = np.concatenate([np.asarray(load_shard(f)) for f in sorted(root.glob(entry["val_bytes_glob"]))])
    starts = np.flatnonzero(toks == 1)
    _, val_docs = split_docs(load_embedded_docs(), 0.05)
    assert starts.size == len(val_docs) and (side[starts] == 0).all()
    ends = list(starts[1:]) + [toks.size]
    import sentencepiece as spm

    norm = spm.SentencePieceNormalizer(rule_name="nmt_nfkc", add_dummy_prefix=False, escape_whitespaces=False)
    for d, a, b in zip(val_docs, starts, ends):  # the documents in SentencePiece normal form are what is counted
        assert int(side[a:b].sum()) == len(norm.normalize(d.text).encode("utf-8"))
    sp = load_sentencepiece(tok_path)
    ops = [sp.piece_to_id(o) for o in caseops.OPERATORS[:3]]
    assert (side[np.isin(toks, ops)] == 0).all() and np.isin(toks, ops).sum() > 1000


def test_sidecar_loader_aligns_and_refuses_mismatches(caseops_data, tmp_path):
    root, entry, data_path, tok_path = caseops_data
    val_glob, side_glob = str(root / entry["val_glob"]), str(root / entry["val_bytes_glob"])
    tokens = load_validation_tokens(val_glob, 64)
    side = load_val_byte_sidecar(val_glob, side_glob, tokens.numel())
    assert side.shape == tokens.shape and int(side[tokens == 1].abs().sum()) == 0
    # a sidecar one entry short, and one with bytes on a BOS
    v = list_shards(val_glob)[0]
    s = sorted(root.glob(entry["val_bytes_glob"]))[0]
    good = np.asarray(load_shard(s), dtype=np.int64)
    short = tmp_path / "short"
    short.mkdir()
    write_shard(short / "x_val_bytes_000000.bin", good[:-1])
    with pytest.raises(ValueError, match=r"x_val_bytes_000000\.bin: .* sidecar entries for .* aligned one to one"):
        load_val_byte_sidecar(str(v), str(short / "*_val_bytes_*.bin"), 10)
    bos = good.copy()
    bos[0] = 5
    write_shard(short / "x_val_bytes_000000.bin", bos)
    with pytest.raises(ValueError, match="position 0 is a BOS .* counts 5 bytes"):
        load_val_byte_sidecar(str(v), str(short / "*_val_bytes_*.bin"), 10)
    with pytest.raises(ValueError, match="0 files for 1 val token shards"):
        load_val_byte_sidecar(str(v), str(tmp_path / "none_*.bin"), 10)


def test_caseops_prepare_is_idempotent(caseops_data):
    root, entry, _, _ = caseops_data
    side = sorted(root.glob(entry["val_bytes_glob"]))[0]
    mtime = side.stat().st_mtime_ns
    again = prepare_dataset(root, caseops=True)
    assert again["prepare_key"] == entry["prepare_key"] and side.stat().st_mtime_ns == mtime


def test_caseops_dataset_is_scored_through_its_sidecar_and_luts_are_refused(caseops_data):
    """The byte counter of a CaseOps dataset is its sidecar; the LUTs of a CaseOps tokenizer are refused (they would
    count each operator piece as its 3 UTF-8 bytes: more bytes, a lower, wrong bpb); the data report's unigram
    val_bpb counts the sidecar."""
    from golflib.data.bytecount import ByteSidecar, load_byte_counter
    from golflib.data.luts import build_sentencepiece_luts
    from golflib.eval.bpb import unigram_bpb
    from golflib.settings.training import DataConfig
    from golflib.workbook.datasets import dataset_report

    root, entry, data_path, tok_path = caseops_data
    counter = load_byte_counter(DataConfig(str(data_path), str(tok_path)), 1024)
    assert isinstance(counter, ByteSidecar)
    val = load_validation_tokens(str(data_path / "*_val_*.bin"), 1)
    assert counter.stream_bytes(val) == entry["stats"]["bytes_val"] == entry["stats"]["utf8_bytes_val"]
    with pytest.raises(ValueError, match=r"a CaseOps tokenizer \(case-operator pieces .*byte LUTs would count"):
        build_sentencepiece_luts(tok_path, 1024)
    rep = dataset_report(root, entry)["report"]
    train0 = load_shard(list_shards(str(data_path / "*_train_*.bin"))[0])
    assert rep["unigram_val_bpb"] == unigram_bpb(train0, val, counter, 1024)
    wrong = build_sentencepiece_luts(tok_path, 1024, transformed_ok=True)
    assert wrong.stream_bytes(val) == entry["stats"]["bytes_val_lut"] > 1.05 * entry["stats"]["bytes_val"]
    assert unigram_bpb(train0, val, wrong, 1024) < 0.95 * rep["unigram_val_bpb"]
    # CASEOPS_ENABLED=1 on a dataset without sidecars is an error, not a silent LUT count
    with pytest.raises(FileNotFoundError, match="CASEOPS_ENABLED=1 but no byte sidecar matches"):
        load_byte_counter(DataConfig(str(root / "nowhere"), str(tok_path), caseops_enabled=True), 1024)


def test_sp1024_and_caseops_score_the_same_bytes_the_documents_utf8(caseops_data, embedded_data):
    """Issue 12: the two preparations of the embedded val documents count exactly the same bytes — the LUT rule
    on sp1024, the sidecar on CaseOps — and both equal the UTF-8 bytes of the documents in SentencePiece normal
    form (NFKC; computed here with sentencepiece's own normalizer on the raw split)."""
    import sentencepiece as spm

    from golflib.data.bytecount import load_byte_counter
    from golflib.settings.training import DataConfig

    root, entry, data_path, tok_path = caseops_data
    plain_val = load_validation_tokens(str(embedded_data["data_path"] / "*_val_*.bin"), 1)
    plain = load_byte_counter(DataConfig(str(embedded_data["data_path"]), str(embedded_data["tokenizer_path"])),
                              1024)
    case_val = load_validation_tokens(str(data_path / "*_val_*.bin"), 1)
    case = load_byte_counter(DataConfig(str(data_path), str(tok_path)), 1024)
    _, val_docs = split_docs(load_embedded_docs(), 0.05)
    norm = spm.SentencePieceNormalizer(rule_name="nmt_nfkc", add_dummy_prefix=False, escape_whitespaces=False)
    utf8 = sum(len(norm.normalize(d.text).encode("utf-8")) for d in val_docs)
    assert plain.stream_bytes(plain_val) == case.stream_bytes(case_val) == utf8
    assert case_val.numel() > 1.05 * plain_val.numel()  # the same bytes, more tokens
    raw = sum(len(d.text.encode("utf-8")) for d in val_docs)
    assert entry["stats"]["raw_utf8_bytes_val"] == raw > utf8  # NFKC and the whitespace rule shorten the raw text


def test_the_data_notebook_finds_the_caseops_export(caseops_data):
    """notebooks/00_data's ``caseops`` parameter: load_or_prepare(..., caseops=True) returns the CaseOps entry."""
    from golflib.workbook.datasets import dataset_name, load_or_prepare

    root, entry, _, _ = caseops_data
    assert dataset_name("embedded", 1024, caseops=True) == entry["name"]
    assert load_or_prepare(root, prepare=False, caseops=True)["prepare_key"] == entry["prepare_key"]
