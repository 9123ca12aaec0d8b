"""The protocol registry (golflib.eval.protocols): each entry runs exactly the protocol the run's config asks for,
with its own log label and one line format, so training, golf eval and the audit compute the same number."""

import copy

import pytest
import torch

from golflib.config import Config
from golflib.eval.bpb import eval_standard
from golflib.eval.context import ScoringContext
from golflib.eval.doc_eval import eval_doc_isolated
from golflib.eval.protocols import PROTOCOLS, get_protocol
from golflib.eval.sliding import eval_sliding
from ttt_calls import run_chunked
from test_ttt import BOS, VOCAB, luts, periodic_stream, tiny_model

CFG = Config().replace({"VOCAB_SIZE": VOCAB, "BOS_ID": BOS, "TRAIN_SEQ_LEN": 32, "EVAL_SEQ_LEN": 32,
                        "EVAL_STRIDE": 16, "VAL_BATCH_SIZE": 256, "EVAL_BATCH_SEQS": 8, "GLOBAL_MICROBATCHES": 2,
                        "TTT_ENABLED": 1, "TTT_KINDS": "chunked", "TTT_CHUNK_TOKENS": 64, "TTT_EPOCHS": 1,
                        "TTT_LR": 0.05, "TTT_BATCH_SEQS": 4, "TTT_GRAD_CLIP": 1.0})


def _stream(n_docs=12):
    t = periodic_stream(n_docs)
    return t[:(t.numel() - 1) // 32 * 32 + 1]


def test_registry_names_and_labels():
    assert [k for k in PROTOCOLS if not k.startswith("custom/")] == ["standard", "sliding", "ttt/chunked", "ttt/lora", "ttt/phased", "ngram/sliding",
                               "ngram/chunked", "ngram/lora", "ngram/phased"]
    assert [PROTOCOLS[k].label for k in ("ttt/chunked", "ttt/phased", "ngram/chunked")] == [
        "legal_ttt", "quantized_ttt_phased", "ngram_ttt"]
    with pytest.raises(ValueError, match="unknown scoring protocol 'slide'; expected one of standard, sliding"):
        get_protocol("slide")


def test_standard_is_the_configured_standard_eval():
    model, toks = tiny_model(), _stream()
    plain = PROTOCOLS["standard"].run(model, toks, luts(), CFG)
    ref = eval_standard(model, toks, luts(), seq_len=32, batch_tokens=256)
    assert (plain.val_loss, plain.tokens, plain.bytes, plain.mode) == (ref.val_loss, ref.tokens, ref.bytes, ref.mode)
    doc_cfg = CFG.replace({"EVAL_DOC_ISOLATED": 1})
    doc = PROTOCOLS["standard"].run(model, toks, luts(), doc_cfg)  # #1855's eval when the run used it
    ref = eval_doc_isolated(model, toks, luts(), seq_len=32, batch_tokens=256, grad_accum_steps=2, bos_id=BOS)
    assert (doc.val_loss, doc.tokens, doc.mode) == (ref.val_loss, ref.tokens, ref.mode) and doc.mode != plain.mode
    assert doc.val_loss != plain.val_loss  # documents isolated: a different number, hence one registry


def test_sliding_and_ttt_entries_match_the_protocol_functions_and_log_one_way():
    model, toks = tiny_model(), _stream()
    s = PROTOCOLS["sliding"].run(model, toks, luts(), CFG.replace({"EVAL_WINDOWS": "legacy"}))
    ref = eval_sliding(model, toks, luts(), seq_len=32, stride=16, batch_seqs=8, window_set="legacy")
    assert (s.val_loss, s.tokens) == (ref.val_loss, ref.tokens)
    lines = PROTOCOLS["sliding"].log_lines(s, CFG, tag="final_int6")
    assert lines[1].startswith("final_int6_sliding_window_exact val_loss:")
    assert " stride:16 eval_seq_len:32 eval_time:" in lines[1]
    out = torch.zeros(toks.numel() - 1)
    t = PROTOCOLS["ttt/chunked"].run(copy.deepcopy(model), toks, luts(), CFG, ScoringContext(scores_out=out))
    direct = run_chunked(copy.deepcopy(model), toks, luts(), seq_len=32, stride=16, chunk_tokens=64, epochs=1,
                         lr=0.05, batch_seqs=4, grad_clip=1.0, eval_batch_seqs=8)
    assert t.val_loss == pytest.approx(direct.val_loss, rel=1e-12) and t.ledger["legal"]
    assert float(out.double().mean()) == pytest.approx(t.val_loss, rel=1e-6)  # the score sink holds what was scored
    assert PROTOCOLS["ttt/chunked"].log_lines(t, CFG)[1].startswith("legal_ttt_exact val_loss:")
