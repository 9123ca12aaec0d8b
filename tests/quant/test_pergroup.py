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


# ── MIXED_CODEC=pergroup-lrzip: #1855's recipe as an artifact codec ────────────────────────────────────────────────

def _mixed_qs(seed=0):
    import torch

    from golflib.model.gpt import GPT
    from golflib.settings.model import ModelConfig
    from golflib.settings.quant import QuantConfig
    from golflib.quant.mixed import quantize_mixed

    torch.manual_seed(seed)
    m = GPT(ModelConfig(num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2, vocab_size=128))
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.02 * torch.rand(p.shape[-1]))
    qs = quantize_mixed(m.state_dict(), QuantConfig(gptq_enabled=False, lqer_enabled=False, keep_float_max_numel=256))
    qs.meta["model"] = {"num_layers": 2}
    return qs


def _pg_blob():
    from golflib.quant.artifact import encode_artifact

    qs = _mixed_qs()
    return qs, encode_artifact(qs, "pergroup-lrzip")


def test_pergroup_codec_round_trips_and_matches_the_record_layout(tmp_path):
    """The artifact decodes bit-exactly; its group sections hold exactly the record's lrzip streams of the code
    matrices (same grouping, row order, column-major bytes), and the per-class budget is exact."""
    _need_lrzip()
    import torch

    from golflib.quant.artifact import read_artifact, read_sections, write_artifact
    from golflib.quant.budget import artifact_budget

    qs = _mixed_qs()
    path = tmp_path / "a.golf"
    n = write_artifact(path, qs, "pergroup-lrzip")
    back = read_artifact(path)
    assert back.meta["codec"] == "pergroup-lrzip" and set(back.tensors) == set(qs.tensors)
    for k, t in qs.tensors.items():
        assert back.tensors[k].dtype == t.dtype and torch.equal(back.tensors[k], t), k
    header, sections = read_sections(path.read_bytes())
    assert header["codec"] == "pergroup-lrzip"
    names = [s["name"] for s, _ in sections]
    assert names[:3] == ["perm:tok_emb.weight", "group:tok_emb.weight", "group:attn.c_k.weight"]
    assert names.index("perm:attn.c_q.weight") + 1 == names.index("group:attn.c_q.weight")
    # independent reconstruction of one group's raw stream: the record's steps on the codes themselves
    (s, data), = [(s, d) for s, d in sections if s["name"] == "group:mlp.fc.weight"]
    assert s["members"] == ["blocks.0.mlp.fc.weight.q", "blocks.1.mlp.fc.weight.q"] and s["sorted"]
    expect = b"".join(np.ascontiguousarray(q[_greedy_l1(q)].T).tobytes()
                      for q in (qs.tensors[m].numpy() for m in s["members"]))
    assert pergroup.lrzip_decompress(data) == expect
    rep = artifact_budget(path.read_bytes())
    assert rep["exact"] and sum(c["bytes"] for c in rep["classes"].values()) + rep["header_bytes"] == n


def _surgery(blob, fn):
    from hostile import join_v2, split_v2

    header, sections = split_v2(blob)
    fn(header, sections)
    return join_v2(header, sections)


def test_pergroup_codec_refuses_hostile_sections_before_running_lrzip():
    _need_lrzip()
    from golflib.quant.artifact import ArtifactError, decode_artifact

    qs, blob = _pg_blob()
    gi = next(i for i, (s, _) in enumerate(_surgery_sections(blob)) if s["name"] == "group:mlp.proj.weight")

    def declare(size):  # the lrzip header's u64 size, CRC recomputed: refused before the binary runs
        def fn(h, secs):
            s, d = secs[gi]
            secs[gi] = (s, d[:6] + size.to_bytes(8, "little") + d[14:])
        return fn

    with pytest.raises(ArtifactError, match="declares 1,099,511,627,776 bytes, the container's tensors need"):
        decode_artifact(_surgery(blob, declare(1 << 40)))

    def drop_member(h, secs):
        s, d = secs[gi]
        secs[gi] = ({**s, "members": s["members"][:1]}, d)
    with pytest.raises(ArtifactError, match="declares .* need"):  # the stream holds two matrices, one is named
        decode_artifact(_surgery(blob, drop_member))

    def foreign_member(h, secs):
        s, d = secs[gi]
        secs[gi] = ({**s, "members": ["blocks.0.attn_scale.q", *s["members"][1:]]}, d)
    with pytest.raises(ArtifactError, match="names no per-row matrix"):
        decode_artifact(_surgery(blob, foreign_member))

    def not_lrzip(h, secs):
        s, d = secs[gi]
        secs[gi] = (s, b"XXXX" + d[4:])
    with pytest.raises(ArtifactError, match="not an lrzip stream"):
        decode_artifact(_surgery(blob, not_lrzip))

    pi = next(i for i, (s, _) in enumerate(_surgery_sections(blob)) if s["name"] == "perm:mlp.fc.weight")

    def bad_perm(h, secs):  # a valid brotli stream of the right length that is no permutation
        import brotli
        s, d = secs[pi]
        rows = len(brotli.decompress(d)) // 2
        secs[pi] = (s, brotli.compress(np.zeros(rows, "<u2").tobytes()))
    with pytest.raises(ArtifactError, match="is not a permutation"):
        decode_artifact(_surgery(blob, bad_perm))

    def no_perm(h, secs):
        del secs[pi]
    with pytest.raises(ArtifactError, match="no 'perm:mlp.fc.weight' section"):
        decode_artifact(_surgery(blob, no_perm))

    def rc_in_pergroup(h, secs):
        h["codec"] = "entropy"
    with pytest.raises(ArtifactError, match="entropy coder|not one a"):
        decode_artifact(_surgery(blob, rc_in_pergroup))


def _surgery_sections(blob):
    from hostile import split_v2

    return split_v2(blob)[1]


def test_lrzip_output_cap_stops_a_stream_that_writes_more_than_declared(monkeypatch):
    """Even when the header is made to agree, the binary cannot write past the expected size (RLIMIT_FSIZE): a
    1 MB stream decoded as if it held 1,000 bytes fails in lrzip, not after filling the disk."""
    _need_lrzip()
    data = pergroup.lrzip_compress(bytes(1_000_000))
    forged = data[:6] + (1000).to_bytes(8, "little") + data[14:]
    with pytest.raises(LrzipError):
        pergroup.lrzip_decompress(forged, expected=1000)


def test_column_scale_oracle_is_the_per_symbol_information_of_the_best_shape():
    """Against a per-symbol computation: each code's probability under a discretized generalized Gaussian with
    its column's RMS as standard deviation, the best shape of the grid for the whole tensor."""
    from scipy.special import gamma
    from scipy.stats import gennorm

    from golflib.quant.report import ORACLE_BETAS, column_scale_oracle_bytes

    rng = np.random.default_rng(0)
    q = np.clip(np.round(rng.laplace(size=(50, 7)) * np.array([0.5, 1, 2, 3, 4, 6, 9])), -31, 31).astype(np.int8)
    best = np.inf
    for beta in ORACLE_BETAS:
        bits = 0.0
        for j in range(q.shape[1]):
            col = q[:, j].astype(float)
            s = np.sqrt((col ** 2).mean()) / np.sqrt(gamma(3 / beta) / gamma(1 / beta))
            for v in col:
                hi, lo = (abs(v) + 0.5) / s, max(abs(v) - 0.5, 0) / s
                p = 2 * gennorm.cdf(hi, beta) - 1 if v == 0 else gennorm.cdf(hi, beta) - gennorm.cdf(lo, beta)
                bits -= np.log2(p)
        best = min(best, bits)
    assert column_scale_oracle_bytes(q) == pytest.approx(best / 8, rel=1e-9)
    # scales given for free beat one histogram for the whole tensor on codes whose columns differ this much
    from golflib.quant.entropy import order0_bits
    assert column_scale_oracle_bytes(q) < order0_bits(q) / 8


def test_symbol_table_per_group_column_is_the_recipe_per_class():
    _need_lrzip()
    from golflib.quant.report import symbol_table

    rng = np.random.default_rng(1)
    items = [(f"blocks.{i}.{k}", cls, rng.integers(-5, 6, size=(16, 8)).astype(np.int8), 6)
             for i in (0, 1) for k, cls in (("attn.c_q.weight", "attention"), ("mlp.fc.weight", "mlp"))]
    t = symbol_table(items)
    for cls in ("attention", "mlp"):
        sel = [(n, q) for n, c, q, _ in items if c == cls]
        assert t["classes"][cls]["pergroup_lrzip"] == pergroup_bytes(sel)["total"]
    assert t["total"]["pergroup_lrzip"] == sum(c["pergroup_lrzip"] for c in t["classes"].values())
    assert t["total"]["entropy_over_pergroup_lrzip"] == round(t["total"]["entropy"] / t["total"]["pergroup_lrzip"], 4)
