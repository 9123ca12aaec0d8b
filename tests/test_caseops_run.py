"""A training run on the embedded corpus's CaseOps export (issue 12): every protocol — standard, sliding, chunked
and doc-LoRA TTT, n-gram — counts the byte sidecar's original bytes of the targets it scored, the log says so, and
``golf audit`` checks the sidecar against the decoded original text (and fails when one entry is off by a byte)."""

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import REPO, TINY, run_golf_train, set_args
from golflib.data.bytecount import ByteSidecar, sidecar_text_audit
from golflib.data.caseops import decode, original_text_decoder
from golflib.data.loader import load_val_byte_sidecar, load_validation_tokens
from golflib.data.luts import load_sentencepiece
from golflib.data.shards import load_shard, write_shard
from golflib.workbook.audit import audit_run
from golflib.workbook.runs import load_result

pytestmark = pytest.mark.slow

CASEOPS_TTT = {"VAL_MAX_TOKENS": 2048, "TTT_ENABLED": 1, "TTT_KINDS": "chunked,lora", "TTT_CHUNK_TOKENS": 512,
               "TTT_EPOCHS": 1, "TTT_LR": 0.01, "TTT_BATCH_SEQS": 8, "TTT_LORA_RANK": 4, "TTT_LORA_LR": 0.003,
               "TTT_CHUNK_SIZE": 32, "TTT_BATCH_SIZE": 8, "NGRAM_ENABLED": 1, "NGRAM_PROTOCOLS": "sliding"}


@pytest.fixture(scope="module")
def caseops_run(tmp_path_factory, caseops_data):
    root, entry, data_path, tok_path = caseops_data
    run_dir = tmp_path_factory.mktemp("caseops_runs") / "tiny"
    overrides = {**TINY, **CASEOPS_TTT, "DATA_PATH": data_path, "TOKENIZER_PATH": tok_path, "CASEOPS_ENABLED": 1}
    proc = run_golf_train(["--preset", "cpu-tiny", "--run-dir", str(run_dir), *set_args(overrides)], cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run_dir


def scored_entries(res) -> dict:
    keys = ("pre_quant", "quantized/standard", "mixed/sliding", "ttt/chunked", "ttt/lora", "ngram/sliding")
    return {k: res.score(k).to_dict() for k in keys}


def test_every_protocol_counts_the_sidecar(caseops_run, caseops_data):
    root, entry, data_path, tok_path = caseops_data
    log = (caseops_run / "train.log").read_text()
    assert "val_bpb:byte_sidecar:enabled files:1" in log
    res = load_result(caseops_run)
    val_glob = str(data_path / "*_val_*.bin")
    side = load_val_byte_sidecar(val_glob, str(data_path / "*_val_bytes_*.bin"), 2049).numpy()
    tokens = load_validation_tokens(val_glob, 1, max_tokens=2049).numpy()
    for name, e in scored_entries(res).items():
        assert e["ledger"]["n_scored"] == e["tokens"] == e["ledger"]["n_targets"], name
        # each target i scored once: Σ sidecar[i + 1] over the scored prefix of the stream
        assert e["bytes"] == int(side[1:e["tokens"] + 1].sum()), name
        assert e["val_bpb"] == pytest.approx(e["val_loss"] * e["tokens"] / (np.log(2) * e["bytes"]), rel=1e-12)
    # the sidecar's bytes are the original text's: decode, invert the transform, count UTF-8
    sp = load_sentencepiece(tok_path)
    n = res.score("quantized/standard").tokens
    docs = np.split(tokens[:n + 1], np.flatnonzero(tokens[:n + 1] == 1)[1:])
    assert sum(len(decode(sp.decode(d[d != 1].tolist())).encode("utf-8")) for d in docs) \
        == res.score("quantized/standard").bytes


def test_golf_audit_checks_the_sidecar_against_the_decoded_text(caseops_run, caseops_data, tmp_path):
    lines = []
    out = audit_run(caseops_run, echo=lines.append)
    assert {p["verdict"] for p in out["protocols"].values()} <= {"PASS", "PASS (declared order)"}
    for p in out["protocols"].values():
        row = next(c for c in p["checks"] if c["check"] == "byte sidecar = decoded original text")
        assert row["ok"] and ", 0 mismatched" in row["detail"]
    assert any("val_bpb:byte_sidecar:enabled" in line for line in lines)
    # one sidecar entry off by one byte: the accounting still adds up, the text audit does not
    root, entry, data_path, tok_path = caseops_data
    bad = tmp_path / "bad_data"
    shutil.copytree(data_path, bad)
    side_file = sorted(bad.glob("*_val_bytes_*.bin"))[0]
    side = np.asarray(load_shard(side_file), dtype=np.int64)
    side[7] += 1  # not a BOS (the loader would refuse that outright)
    write_shard(side_file, side)
    bad_run = tmp_path / "bad_run"
    shutil.copytree(caseops_run, bad_run)
    cfg = json.loads((bad_run / "config.json").read_text())
    cfg["config"]["data"]["data_path"] = str(bad)
    (bad_run / "config.json").write_text(json.dumps(cfg))
    out = audit_run(bad_run, echo=lambda s: None)
    row = next(c for c in out["protocols"]["quantized/standard"]["checks"]
               if c["check"] == "byte sidecar = decoded original text")
    assert not row["ok"] and ", 1 mismatched" in row["detail"]
    assert out["protocols"]["quantized/standard"]["verdict"] == "FAIL"


def test_sidecar_text_audit_locates_the_document():
    class SP:  # pieces spell the transformed text; ids 4.. map to characters
        def decode(self, docs):
            return ["".join(chr(i) for i in d) for d in docs]

    toks = np.array([1, 0xE001, ord("a"), ord("b"), 1, ord("c")])  # "\ue001ab" → "Ab"; "c"
    good = ByteSidecar(torch.tensor([0, 0, 1, 1, 0, 1], dtype=torch.int32))
    a = sidecar_text_audit(toks, good, SP(), decode)
    assert a["ok"] and (a["docs"], a["sidecar_bytes"], a["decoded_bytes"]) == (2, 3, 3)
    off = ByteSidecar(good.per_token.clone())
    off.per_token[5] = 2
    a = sidecar_text_audit(toks, off, SP(), decode)
    assert not a["ok"] and a["first_mismatch"] == {"doc_start": 4, "sidecar_bytes": 2, "decoded_bytes": 1}
    # a stream cut inside its last document compares the complete ones only
    a = sidecar_text_audit(toks, off, SP(), decode, last_complete=False)
    assert a["ok"] and a["docs"] == 1


def test_the_decoder_follows_the_tokenizer(caseops_data, embedded_data):
    assert original_text_decoder(load_sentencepiece(caseops_data[3])) is decode
    plain = original_text_decoder(load_sentencepiece(embedded_data["tokenizer_path"]))
    assert plain("\ue001ab") == "\ue001ab"
