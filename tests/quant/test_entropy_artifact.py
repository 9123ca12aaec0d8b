"""The entropy coder, the version-2 container, every codec's bit-exact round trip, pickle refusal, the budget and
pruning to a decimal byte target."""

import io
import pickle
import struct
import zlib

import numpy as np
import pytest
import torch
import zstandard

from golflib.errors import BudgetError
from golflib.settings.model import ModelConfig
from golflib.settings.quant import QuantConfig
from golflib.model.gpt import GPT
from golflib.quant.artifact import (ArtifactError, coded_tensors, decode_artifact, encode_artifact, read_artifact,
                                    read_sections, write_artifact)
from golflib.quant.budget import artifact_budget, budget_report
from golflib.quant.entropy import EntropyCoder, EntropyError, kind_of, order0_bound_bytes, order0_bits
from golflib.quant.export import export_mixed, load_artifact_model, load_artifact_state
from golflib.quant.int8 import dequantize, quantize_int8
from golflib.quant.mixed import quantize_mixed
from golflib.quant.prune import parse_byte_target, prune_candidates, prune_to_target

CODECS = ["zlib", "zstd", "lzma", "brotli", "brotli+shuffle2", "zstd+shuffle4", "entropy"]


def small_model(seed=0, dim=64, layers=2):
    torch.manual_seed(seed)
    m = GPT(ModelConfig(num_layers=layers, model_dim=dim, num_heads=4, num_kv_heads=2, vocab_size=128))
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.02 * torch.rand(p.shape[-1]))  # columns with different scales
    return m


SMALL = 256  # KEEP_FLOAT_MAX_NUMEL of these width-64 models: block matrices (>= 2,048 elements) are quantized


def mixed_state(lqer=True, **kw):
    m = small_model()
    cfg = QuantConfig(gptq_enabled=False, lqer_enabled=lqer, lqer_top_k=2, keep_float_max_numel=SMALL, **kw)
    qs = quantize_mixed(m.state_dict(), cfg)
    qs.meta["model"] = {"num_layers": 2}
    return m, qs


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
@pytest.mark.parametrize("shape", [(1, 1), (1, 37), (29, 1), (40, 64)])
def test_entropy_coder_round_trip_random(bits, shape):
    rng = np.random.default_rng(bits * 100 + shape[0])
    m = 2 ** (bits - 1) - 1
    q = np.clip(np.round(rng.standard_normal(shape) * m / 3 * rng.uniform(0.1, 2, shape[1])), -m, m).astype(np.int8)
    enc, dec = EntropyCoder(), EntropyCoder()
    tensors = [q, np.zeros_like(q), np.full_like(q, m), -q]  # incl. constant tensors and extreme codes
    blobs = [enc.encode(t, bits, "k/%d" % bits) for t in tensors]
    for t, (blob, info) in zip(tensors, blobs):
        out = dec.decode(blob, t.shape, bits, "k/%d" % bits, info["level"])
        assert out.dtype == np.int8 and np.array_equal(out, t)


def test_entropy_coder_beats_order0_bound_and_zstd_on_column_structured_codes():
    rng = np.random.default_rng(0)
    col_sd = 2.4 * 2 ** rng.normal(0, 0.6, 256)  # columns whose variances differ (DESIGN.md "Artifact")
    qs = [np.clip(np.round(rng.standard_normal((192, 256)) * col_sd), -31, 31).astype(np.int8) for _ in range(4)]
    enc = EntropyCoder()
    coded = sum(len(enc.encode(q, 6, "blocks.#.w/6")[0]) for q in qs)
    bound = sum(order0_bound_bytes(q)["total"] for q in qs)
    zstd = len(zstandard.ZstdCompressor(level=22).compress(np.concatenate([q.ravel() for q in qs]).tobytes()))
    assert coded < 0.97 * bound and coded < 0.96 * zstd
    # on i.i.d. codes (no structure) it stays within 0.5% of the order-0 bound incl. its table
    iid = np.clip(np.round(rng.standard_normal((192, 256)) * 2.4), -31, 31).astype(np.int8)
    assert len(EntropyCoder().encode(iid, 6, "x/6")[0]) <= 1.005 * order0_bound_bytes(iid)["total"]


def test_entropy_coder_errors_and_order0_helpers():
    with pytest.raises(EntropyError, match="outside"):
        EntropyCoder().encode(np.array([[40]], np.int8), 6, "k")
    with pytest.raises(EntropyError, match="bits"):
        EntropyCoder().encode(np.zeros((2, 2), np.int8), 9, "k")
    with pytest.raises(EntropyError, match="2-D"):
        EntropyCoder().encode(np.zeros(4, np.int8), 6, "k")
    with pytest.raises(EntropyError, match="two bit widths"):
        c = EntropyCoder()
        c.encode(np.zeros((2, 2), np.int8), 6, "k")
        c.encode(np.zeros((2, 2), np.int8), 4, "k")
    assert order0_bits(np.array([0, 0, 1, 1])) == pytest.approx(4.0)
    assert kind_of("blocks.3.attn.c_q.weight", 6) == "blocks.#.attn.c_q.weight/6"


@pytest.mark.parametrize("codec", CODECS)
def test_every_codec_round_trips_the_artifact_bit_exactly(codec, tmp_path):
    m, qs = mixed_state()
    path = tmp_path / f"a_{codec}.golf"
    n = write_artifact(path, qs, codec)
    assert n == path.stat().st_size
    back = read_artifact(path)
    assert back.meta == qs.meta and back.meta["codec"] == codec
    assert set(back.tensors) == set(qs.tensors)
    for k, t in qs.tensors.items():
        assert back.tensors[k].dtype == t.dtype and torch.equal(back.tensors[k], t), k
    sd_mem, sd_disk = dequantize(qs), load_artifact_state(path)
    assert all(torch.equal(sd_mem[k], sd_disk[k]) for k in sd_mem)
    if codec == "entropy":
        assert path.read_bytes()[4] == 2 and len(coded_tensors(qs)) == 13  # 12 block matrices + tok_emb


def test_int8_scheme_with_entropy_codec_and_self_describing_header(tmp_path):
    m = small_model()
    qs = quantize_int8(m.state_dict(), QuantConfig(keep_float_max_numel=1000))
    blob = encode_artifact(qs, "entropy")
    back = decode_artifact(blob)
    assert all(torch.equal(back.tensors[k], v) for k, v in qs.tensors.items())
    header, sections = read_sections(blob)
    rc = [s for s, _ in sections if s["codec"] == "rc"]
    assert rc and all(s["bits"] == 8 and s["name"].endswith(".q") for s in rc)
    _, qm = mixed_state(lqer=False)
    meta = decode_artifact(encode_artifact(qm, "entropy")).meta
    e = meta["tensors"]["blocks.0.attn.c_q.weight"]
    assert (e["bits"], e["clip"], e["method"], e["class"]) == (6, "sdclip:12.85", "rtn", "attention")
    assert meta["tensors"]["tok_emb.weight"]["bits"] == 8 and meta["quant"]["matrix_bits"] == 6
    assert meta["codec"] == "entropy" and meta["scheme"] == "golflib_mixed_v1"


def _evil_pickle(marker):
    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    return pickle.dumps({"w": Evil()})


def test_planted_malicious_pickles_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = _evil_pickle(marker)
    buf = io.BytesIO()
    torch.save({"x": torch.zeros(2)}, buf)
    plants = {
        "raw.golf": evil,
        "final_model.int8.ptz": zlib.compress(evil),
        "torch_save.golf": buf.getvalue(),
        "v1_wrapped.golf": b"GOLF" + struct.pack("<BB", 1, 4) + b"zlib" + zlib.compress(evil),
    }
    # a version-2 container whose (CRC-valid) section carries the pickle instead of safetensors
    _, qs = mixed_state(lqer=False)
    good = encode_artifact(qs, "entropy")
    header, sections = read_sections(good)
    import brotli
    import json

    payload = brotli.compress(evil)
    last = dict(sections[-1][0], length=len(payload), crc32=zlib.crc32(payload))
    header["sections"] = [s for s, _ in sections[:-1]] + [last]
    hb = brotli.compress(json.dumps(header).encode())
    plants["v2_section.golf"] = b"GOLF" + struct.pack("<BI", 2, len(hb)) + hb + b"".join(
        d for _, d in sections[:-1]) + payload
    for name, blob in plants.items():
        p = tmp_path / name
        p.write_bytes(blob)
        with pytest.raises(ArtifactError) as e:
            read_artifact(p)
        assert name in str(e.value)
        with pytest.raises(ArtifactError):
            load_artifact_model(p)
    assert not marker.exists()  # nothing was unpickled
    cut = bytearray(good)
    cut[-5] ^= 0xFF
    with pytest.raises(ArtifactError, match="CRC-32"):
        decode_artifact(bytes(cut), "flipped.golf")
    with pytest.raises(ArtifactError, match="past the end"):
        decode_artifact(good[:-3], "short.golf")


def test_budget_is_exact_for_sectioned_artifacts(tmp_path):
    _, qs = mixed_state()
    path = tmp_path / "m.golf"
    write_artifact(path, qs, "entropy")
    b = artifact_budget(path.read_bytes())
    assert b["exact"] and sum(c["bytes"] for c in b["classes"].values()) + b["header_bytes"] == b["artifact_bytes"]
    assert {"embedding", "attention", "mlp", "control"} <= set(b["classes"])
    rep = budget_report(path, code_bytes=1000, limit="15.9MB")
    assert rep["limit"] == 15_900_000 and rep["under_limit"] and rep["bytes_total"] == path.stat().st_size + 1000
    over = budget_report(path, code_bytes=0, limit=100)
    assert not over["under_limit"] and over["headroom"] < 0
    write_artifact(tmp_path / "v1.golf", qs, "brotli")
    b1 = artifact_budget((tmp_path / "v1.golf").read_bytes())
    assert not b1["exact"] and b1["artifact_bytes"] == (tmp_path / "v1.golf").stat().st_size
    with pytest.raises(BudgetError, match="above the challenge limit"):
        budget_report(path, 0, limit=16_777_216)


def test_parse_byte_target_is_decimal_and_refuses_binary_units():
    assert parse_byte_target("15.9MB") == 15_900_000
    assert parse_byte_target("16 mb") == 16_000_000
    assert parse_byte_target("15900kB") == 15_900_000
    assert parse_byte_target(16_000_000) == parse_byte_target("16e6") == 16_000_000
    for bad in ("15.9MiB", "16MIB", "15000KiB"):
        with pytest.raises(ValueError, match="binary units"):
            parse_byte_target(bad)
    for bad in ("", "abc", "-5", "12 parsecs", "0.5", True):
        with pytest.raises(ValueError):
            parse_byte_target(bad)


@pytest.mark.parametrize("codec", ["entropy", "zstd"])
def test_pruning_lands_at_or_under_a_decimal_target(codec):
    _, qs = mixed_state(lqer=False)
    size = lambda s: len(encode_artifact(s, codec))  # noqa: E731
    before = size(qs)
    target = before - 600
    pruned, info = prune_to_target(qs, size, target)
    assert size(pruned) < target == info["target_bytes"] and info["bytes_after"] == size(pruned)
    assert 0 < info["pruned"] < info["candidates"]
    changed_cost, kept_cost = [], []
    for name, idx, cost in prune_candidates(qs):
        a, b = qs.tensors[name + ".q"].view(-1)[idx], pruned.tensors[name + ".q"].view(-1)[idx]
        assert set(a.unique().tolist()) <= {-1, 1} and set(b.unique().tolist()) <= {-1, 0, 1}
        changed_cost += cost[(b == 0).numpy()].tolist()
        kept_cost += cost[(b != 0).numpy()].tolist()
    assert len(changed_cost) == info["pruned"] and max(changed_cost) <= min(kept_cost)  # cheapest first
    for name in qs.tensors:  # nothing but ±1 codes changed
        diff = qs.tensors[name] != pruned.tensors[name]
        if diff.any():
            assert name.endswith(".q") and set(qs.tensors[name][diff].abs().unique().tolist()) == {1}
    same, info0 = prune_to_target(qs, size, before + 10)
    assert same is qs and info0["pruned"] == 0
    with pytest.raises(ValueError, match="not under the target"):
        prune_to_target(qs, size, 1000)


def test_export_mixed_with_prune_target_counts_code_bytes(tmp_path):
    m = small_model()
    free = export_mixed(m.state_dict(), tmp_path / "free.golf", QuantConfig(gptq_enabled=False,
                                                                            keep_float_max_numel=SMALL), m.cfg)[0]
    target = free.artifact_bytes + 5000 - 400  # total with 5,000 code bytes must drop 400 bytes
    info, extras = export_mixed(m.state_dict(), tmp_path / "p.golf",
                                QuantConfig(gptq_enabled=False, prune_target_bytes=target, keep_float_max_numel=SMALL),
                                m.cfg, code_bytes=5000)
    assert info.artifact_bytes + 5000 <= target and extras["prune"]["pruned"] > 0
    assert load_artifact_model(tmp_path / "p.golf").cfg == m.cfg
