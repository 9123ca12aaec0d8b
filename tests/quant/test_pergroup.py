"""#1855's per-group lrzip recipe as a measurement codec (issue 19 anchor): its row order against an independent
greedy search, its grouping and layout, and a real lrzip round trip."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from golflib.quant import pergroup
from golflib.quant.pergroup import LrzipError, group_of, group_streams, pergroup_bytes, similarity_order


def _greedy_l1(q: np.ndarray) -> list[int]:
    """Plain-Python greedy nearest-neighbour chain from row 0 (ties: the lowest row index)."""
    rows = [list(map(int, r)) for r in q]
    order, left = [0], set(range(1, len(rows)))
    while left:
        cur = rows[order[-1]]
        best = min(left, key=lambda j: (sum(abs(a - b) for a, b in zip(rows[j], cur)), j))
        order.append(best)
        left.remove(best)
    return order


def _need_lrzip():
    if shutil.which("lrzip") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("lrzip is not installed; .ci/run installs it")
        pytest.skip("the lrzip binary is not installed (apt-get install lrzip)")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_similarity_order_is_the_greedy_l1_chain(seed):
    rng = np.random.default_rng(seed)
    q = rng.integers(-3, 4, size=(40, 6)).astype(np.int8)  # small alphabet: many ties
    order = similarity_order(q)
    assert order.dtype == np.uint16 and sorted(order.tolist()) == list(range(40))
    assert order.tolist() == _greedy_l1(q)


def test_groups_layout_follows_the_record():
    assert group_of("blocks.3.attn.c_q.weight") == "attn.c_q.weight" and group_of("tok_emb.weight") == "tok_emb.weight"
    assert group_of("blocks.0.attn_scale") is None and group_of("lm_head.weight") is None
    rng = np.random.default_rng(0)
    items = [(f"blocks.{i}.{k}", rng.integers(-31, 32, size=(8, 4)).astype(np.int8))
             for i in (1, 0) for k in ("attn.c_k.weight", "attn.c_q.weight")] + [
        ("lm_head.weight", np.zeros((2, 2), np.int8))]
    raw, perms, rest = group_streams(items)
    d = dict(items)
    assert list(raw) == ["attn.c_k.weight", "attn.c_q.weight"] and rest == ["lm_head.weight"]
    # c_k: no row sort, column-major, layer 0 before layer 1
    assert raw["attn.c_k.weight"] == (d["blocks.0.attn.c_k.weight"].T.tobytes()
                                      + d["blocks.1.attn.c_k.weight"].T.tobytes())
    # c_q: rows in the chained order, the two permutations stored as uint16 in layer order
    o0, o1 = (similarity_order(d[f"blocks.{i}.attn.c_q.weight"]) for i in (0, 1))
    assert perms == o0.tobytes() + o1.tobytes()
    assert raw["attn.c_q.weight"] == (d["blocks.0.attn.c_q.weight"][o0.astype(int)].T.tobytes()
                                      + d["blocks.1.attn.c_q.weight"][o1.astype(int)].T.tobytes())


def test_pergroup_bytes_round_trip_through_lrzip():
    _need_lrzip()
    rng = np.random.default_rng(0)
    items = [(f"blocks.{i}.mlp.fc.weight", np.clip(np.round(rng.normal(0, 6, (64, 32))), -31, 31).astype(np.int8))
             for i in range(2)] + [("extra", np.ones((4, 4), np.int8))]
    r = pergroup_bytes(items)
    assert set(r["groups"]) == {"mlp.fc.weight"} and r["perms"] > 0 and r["rest"] > 0
    assert r["total"] == r["groups"]["mlp.fc.weight"] + r["perms"] + r["rest"] and r["symbols"] == 2 * 64 * 32 + 16
    blob = pergroup.lrzip_compress(b"golf" * 1000)
    assert blob[:4] == b"LRZI" and pergroup.lrzip_decompress(blob) == b"golf" * 1000


def test_missing_lrzip_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(pergroup.shutil, "which", lambda name: None)
    with pytest.raises(LrzipError, match="apt-get install lrzip"):
        pergroup.lrzip_compress(b"x")
    with pytest.raises(LrzipError, match="lrzip binary is not installed"):
        pergroup_bytes([("tok_emb.weight", np.zeros((2, 2), np.int8))])


@pytest.mark.slow
def test_golf_quant_codecs_reports_the_pergroup_recipe_on_the_same_symbols(quant_run, capsys):
    import json

    from golflib.cli import main as golf

    _need_lrzip()
    assert golf(["quant", "codecs", str(quant_run), "--lrzip"]) == 0
    rep = json.loads(capsys.readouterr().out)["classes"]
    for cls, r in rep.items():
        pg = r["pergroup_lrzip"]
        assert pg["symbols"] == r["symbols"] and pg["total"] == sum(pg["groups"].values()) + pg["perms"] + pg["rest"]
    assert set(rep["all"]["pergroup_lrzip"]["groups"]) >= {"attn.c_q.weight", "mlp.fc.weight"}
