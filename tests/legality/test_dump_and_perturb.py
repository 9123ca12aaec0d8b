"""Score dumps (golflib.eval.dump) and the perturbation plan and comparison (golflib.workbook.perturb) on small
hand-made inputs whose answers are known."""

import numpy as np
import pytest
import torch

from golflib.eval.dump import ScoreDump
from golflib.eval.ledger import Ledger
from golflib.workbook.perturb import Perturbation, compare, doc_ids, order_check, plan, replace_tokens


def test_dump_counts_repeats_keeps_the_scoring_order_and_ties_rows_to_nlls(tmp_path):
    toks = torch.tensor([1, 5, 6, 7, 1, 8, 9])
    d = ScoreDump(toks, 10, sample=[2, 4])
    logits = torch.randn(3, 10)
    lp = torch.log_softmax(logits, -1)
    y = toks[torch.tensor([3, 4, 5]) + 1]
    nll = -lp[torch.arange(3), y]
    led = Ledger(6, strict=False)
    d.write([3, 4, 5], nll, logits, log_probs=False, ledger=led)  # rows as logits: log-softmax taken
    d.write([0, 1, 2], torch.zeros(3))  # sampled position 2 without its row
    d.write([1], torch.ones(1))  # scored again
    s = d.summary()
    assert s["scored"] == 6 and s["repeated"] == 1 and s["max_count"] == 2 and s["rows_written"] == 1
    assert s["rows_missing"] == 1 and s["untied_rows"] == 0 and d.rank.tolist() == [3, 4, 5, 0, 1, 2]
    assert led.report()["c2_rows_tied"] == 1
    bad = ScoreDump(toks, 10, sample=[3])
    bad.write([3], nll[:1] - 0.5, logits[:1], log_probs=False)  # a row that is not the one scored
    assert bad.summary()["untied_rows"] == 1 and bad.summary()["first_untied"]["position"] == 3
    d.save(tmp_path / "d.safetensors", {"key": "x"})
    from golflib.eval.dump import load_dump

    back = load_dump(tmp_path / "d.safetensors")
    assert back["meta"]["key"] == "x" and np.array_equal(back["count"], d.count.numpy())
    with pytest.raises(ValueError, match="sample positions"):
        ScoreDump(toks, 10, sample=[6])


def test_replacement_keeps_documents_and_never_makes_a_bos():
    rng = np.random.default_rng(0)
    toks = rng.integers(0, 5, size=2000)
    out = replace_tokens(toks, 100, 2000, 5, 1, np.random.default_rng(1))
    assert np.array_equal(out[:100], toks[:100])
    assert np.array_equal(out[100:] == 1, toks[100:] == 1)  # BOS kept, none made
    assert (out[100:][toks[100:] != 1] != toks[100:][toks[100:] != 1]).all()
    p = plan(np.r_[1, toks], vocab_size=5, bos_id=1, cuts=2, seed=0, first_chunk=256)
    assert {q.kind for q in p} == {"stream", "document"} and any(q.cut == 128 for q in p)
    docs = doc_ids(np.r_[1, toks], 1)
    for q in p:
        assert np.array_equal(q.tokens[:q.cut + 1], np.r_[1, toks][:q.cut + 1])
        if q.kind == "document":
            assert docs[q.cut] == docs[q.end - 1] and np.array_equal(q.tokens[q.end + 1:], np.r_[1, toks][q.end + 1:])


def dump(nll, rank, rows=None, sample=()):
    n = len(nll)
    return {"nll": np.asarray(nll, np.float32), "count": np.ones(n, np.uint8), "rank": np.asarray(rank, np.int32),
            "sample": np.asarray(sample, np.int64),
            "rows": np.asarray(rows if rows is not None else np.zeros((len(sample), 3)), np.float32)}


def test_compare_in_the_stream_unit_and_in_the_order_it_ran():
    p = Perturbation("cut", "stream", 3, 6, np.zeros(7))
    a = dump([1, 2, 3, 4, 5, 6], range(6))
    same_past = dump([1, 2, 3, 9, 9, 9], range(6))
    assert compare(a, same_past, p, "stream")["ok"] and compare(a, same_past, p, "stream")["n_compared"] == 3
    moved = dump([1, 2, 7, 4, 5, 6], range(6))
    r = compare(a, moved, p, "stream")
    assert not r["ok"] and r["first_diff"] == 2
    # a document-unit protocol that scored position 5 first: replacing 3.. may move 0..2 if they came after it
    backwards = dump([1, 2, 3, 4, 5, 6], [5, 4, 3, 2, 1, 0])
    assert compare(backwards, dump([7, 7, 7, 4, 5, 6], [5, 4, 3, 2, 1, 0]), p, "document")["ok"]
    assert not compare(backwards, dump([7, 7, 7, 4, 5, 6], [5, 4, 3, 2, 1, 0]), p, "stream")["ok"]
    # the row at the cut is formed from an unchanged prefix: it must not move
    rows = np.eye(3)[[0, 1]]
    r = compare(dump(range(6), range(6), rows, [1, 3]), dump(range(6), range(6), rows[::-1], [1, 3]), p, "stream")
    assert not r["ok"] and r["first_row_diff"] == 1


def test_order_check_per_unit():
    docs = np.array([0, 0, 0, 1, 1, 1])
    assert order_check(dump(range(6), [3, 4, 5, 0, 1, 2]), "document", docs)[0]
    assert not order_check(dump(range(6), [3, 4, 5, 0, 1, 2]), "stream", docs)[0]
    ok, detail = order_check(dump(range(6), [2, 1, 0, 3, 4, 5]), "document", docs)
    assert not ok and "inside document 0" in detail
