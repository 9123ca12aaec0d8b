import io
import pickle
import zlib

import pytest
import torch

from golflib.settings.model import ModelConfig
from golflib.settings.quant import QuantConfig
from golflib.model.gpt import GPT
from golflib.quant.artifact import ArtifactError, decode_artifact, encode_artifact, read_artifact
from golflib.quant.codecs import BASE_CODECS, CodecError, byte_shuffle, byte_unshuffle, compress, decompress
from golflib.quant.export import export_int8, load_artifact_model, load_artifact_state
from golflib.quant.int8 import dequantize, quantize_int8


def small_model(seed=0):
    torch.manual_seed(seed)
    m = GPT(ModelConfig(num_layers=2, model_dim=256, num_heads=4, num_kv_heads=2, vocab_size=300))
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.02)
    return m


def test_int8_rules_match_spec():
    m = small_model()
    sd = m.state_dict()
    qs = quantize_int8(sd, QuantConfig())
    meta = qs.meta["tensors"]
    # 256*256 = 65,536 elements: passthrough (<= 65,536); 300*256 = 76,800: per-row int8
    assert meta["blocks.0.attn.c_q.weight"]["kind"] == "passthrough"
    assert meta["tok_emb.weight"]["kind"] == "per_row"
    assert meta["blocks.0.mlp.fc.weight"]["kind"] == "per_row"
    assert qs.tensors["blocks.0.attn.c_q.weight"].dtype == torch.float16
    assert qs.tensors["blocks.0.attn_scale"].dtype == torch.float32  # control tensor kept fp32
    w = sd["blocks.0.mlp.fc.weight"].float()
    q, s = qs.tensors["blocks.0.mlp.fc.weight.q"], qs.tensors["blocks.0.mlp.fc.weight.scale"]
    clip = torch.quantile(w.abs(), 0.9999984, dim=1)
    torch.testing.assert_close(s, (clip / 127).to(torch.float16))
    assert q.dtype == torch.int8 and q.abs().max() <= 127
    deq = dequantize(qs)["blocks.0.mlp.fc.weight"]
    s32, s16 = (clip / 127)[:, None], s.float()[:, None]
    inside = w.abs() <= clip[:, None]
    bound = 0.5 * s32 + 127 * (s16 - s32).abs() + 1e-7  # rounding + fp16 storage of the scale
    assert ((deq - w).abs() <= bound)[inside].all()
    torch.testing.assert_close(deq, q.float() * s16)


def test_legacy_scale_floor_option():
    w = torch.randn(4, 20000) * 0.01  # max |w| << 1: the 1/127 floor dominates
    on = quantize_int8({"w": w}, QuantConfig(legacy_scale_floor=True)).tensors["w.scale"].float()
    off = quantize_int8({"w": w}, QuantConfig()).tensors["w.scale"].float()
    assert torch.allclose(on, torch.full_like(on, 1 / 127), rtol=1e-3)
    assert (off < 1e-3).all()


@pytest.mark.parametrize("codec", list(BASE_CODECS) + ["brotli+shuffle2", "zstd+shuffle4"])
def test_codecs_round_trip(codec):
    data = bytes(range(256)) * 50 + b"tail"
    assert decompress(compress(data, codec), codec) == data


def test_shuffle_and_bad_codec():
    data = bytes(range(10))
    assert byte_shuffle(data, 2) == bytes([0, 2, 4, 6, 8, 1, 3, 5, 7, 9])
    assert byte_unshuffle(byte_shuffle(data + b"x", 4), 4) == data + b"x"
    with pytest.raises(CodecError, match="unknown codec 'gzip'"):
        compress(data, "gzip")


def test_artifact_round_trip_tensors_equal(tmp_path):
    m = small_model()
    path = tmp_path / "a.golf"
    info = export_int8(m.state_dict(), path, QuantConfig(), m.cfg)
    assert info.artifact_bytes == path.stat().st_size
    mem = dequantize(quantize_int8(m.state_dict(), QuantConfig()))
    disk = load_artifact_state(path)
    assert mem.keys() == disk.keys()
    for k in mem:
        assert torch.equal(mem[k], disk[k]), k
    m2 = load_artifact_model(path)  # architecture read from the artifact itself
    assert m2.cfg == m.cfg
    for k, v in m2.state_dict().items():
        assert torch.equal(v, disk[k].to(v.dtype))
    meta = read_artifact(path).meta
    assert meta["codec"] == "zlib" and meta["tensors"]["tok_emb.weight"]["bits"] == 8


def test_foreign_and_corrupt_artifacts_refused(tmp_path):
    m = small_model()
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    cases = {
        "model.pt": (buf.getvalue(), "zip archive"),
        "evil.pkl": (pickle.dumps({"a": 1}), "Python pickle"),
        "final_model.int8.ptz": (zlib.compress(pickle.dumps({"a": 1})), "zlib stream"),
    }
    for name, (blob, kind) in cases.items():
        p = tmp_path / name
        p.write_bytes(blob)
        with pytest.raises(ArtifactError, match=kind) as e:
            read_artifact(p)
        assert name in str(e.value) and "pickle-free" in str(e.value)
    good = encode_artifact(quantize_int8(m.state_dict()), "zlib")
    with pytest.raises(ArtifactError, match="cut.golf: zlib: payload (does not decode|decompresses to more)"):
        decode_artifact(good[:-20] + b"\0" * 20, "cut.golf")
    with pytest.raises(ArtifactError, match="no such artifact"):
        read_artifact(tmp_path / "missing.golf")
