"""Bad input gets a clear error and costs nothing (issue 16): each case the issue lists as its own test, then the
fuzz run over artifacts, headers, shards, tokenizers and config values (tests/fuzz_worker.py, in a fresh process so
its peak memory and address space can be bounded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
import torch

from conftest import REPO
from golflib.cli import main as golf
from golflib.config import Config, env_names, looks_like_ours
from golflib.data.bytecount import load_byte_counter
from golflib.data.luts import load_sentencepiece
from golflib.data.tokcheck import check_tokenizer
from golflib.errors import (BudgetError, ConfigError, GolfError, ManifestError, RunDirError, TokenizerError,
                            parse_json)
from golflib.quant.artifact import ArtifactError, _safetensors_bytes, decode_artifact, encode_artifact, read_artifact
from golflib.quant.budget import budget_report
from golflib.quant.export import load_artifact_model
from golflib.quant.int8 import dequantize
from golflib.quant.limits import MAX_HEADER_JSON, element_budget
from golflib.quant.prune import parse_limit, prune_to_target
from golflib.settings.training import DataConfig
from golflib.workbook.launch import launch_training
from hostile import (brotli_whitespace, copy_dataset, deep_json, join_v2, split_v2, tiny_state,
                     train_tokenizer, v1_raw_blob, zlib_bomb)

HERE = Path(__file__).parent


def _expect(exc, match, fn, *args, **kw):
    with pytest.raises(exc, match=match) as e:
        fn(*args, **kw)
    return str(e.value)


# ---- decompression bombs -------------------------------------------------------------------------------------------
def test_zlib_bomb_is_refused_before_inflating():
    """A 64 MB run of zeros after a legitimate payload (the issue's 1 MB file reached 2.3 GB RSS): the payload is
    decompressed no further than its safetensors header declares plus one byte."""
    _, qs = tiny_state()
    raw = _safetensors_bytes(qs.tensors, qs.meta)
    blob = v1_raw_blob(zlib_bomb(raw, 64 << 20))
    assert len(blob) < 100_000
    tracemalloc.start()
    try:
        msg = _expect(ArtifactError, "decompresses to more than", decode_artifact, blob, "bomb.golf")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert msg.startswith("bomb.golf: zlib") and peak < 4 * len(raw) + (1 << 20), peak


def test_entropy_header_bomb_is_refused():
    """The issue's case: a version-2 header whose brotli stream expands to 1 GiB (whitespace after valid JSON, so the
    old loader inflated all of it and then loaded and scored the artifact). Decompression stops past
    MAX_HEADER_JSON (8 MiB): the Python-side peak stays within a few times that, not 1 GiB."""
    _, qs = tiny_state()
    header, sections = split_v2(encode_artifact(qs, "entropy"))
    bomb = brotli_whitespace(json.dumps(header).encode(), 1 << 30)
    assert len(bomb) < 300_000
    blob = join_v2(header, sections, header_bytes=bomb)
    tracemalloc.start()
    try:
        _expect(ArtifactError, r"h.golf: version-2 header: brotli: payload decompresses to more than", decode_artifact,
                blob, "h.golf")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * MAX_HEADER_JSON, peak


# ---- trusted shapes ------------------------------------------------------------------------------------------------
def test_section_shape_must_match_its_tensor():
    """An rc section claiming [60000, 70000] codes (4.2e9 symbols, the issue's 15.8 GiB) for a tensor the metadata
    declares much smaller: refused from the header, before the coder allocates anything."""
    _, qs = tiny_state()
    header, sections = split_v2(encode_artifact(qs, "entropy"))
    i = next(k for k, (s, _) in enumerate(sections) if s["codec"] == "rc")
    s, data = sections[i]
    sections[i] = ({**s, "shape": [60000, 70000]}, data)
    blob = join_v2(header, sections)
    msg = _expect(ArtifactError, "is not the \\[rows, cols\\] matrix of the declared shape", decode_artifact, blob,
                  "s.golf")
    assert s["name"] in msg


def test_rc_section_claiming_8000x8000_is_refused_at_once():
    """Metadata and section agree on 8000 x 8000 codes in a 1 KB-scale file (the issue's took 97 s of CPU): the
    element budget of the file refuses it in milliseconds."""
    _, qs = tiny_state()
    header, sections = split_v2(encode_artifact(qs, "entropy"))
    i = next(k for k, (s, _) in enumerate(sections) if s["codec"] == "rc")
    s, _ = sections[i]
    name = s["name"][:-2]
    header["meta"]["tensors"][name]["shape"] = [8000, 8000]
    sections[i] = ({**s, "shape": [8000, 8000]}, b"\x01" * 200)
    blob = join_v2(header, sections)
    assert 64_000_000 > element_budget(len(blob))
    t0 = time.perf_counter()
    msg = _expect(ArtifactError, "more than the .* a .*-byte artifact may hold", decode_artifact, blob, "big.golf")
    assert time.perf_counter() - t0 < 1.0 and msg.startswith("big.golf")


def test_model_config_larger_than_the_artifact_is_refused_before_allocation(tmp_path, monkeypatch):
    """The stored config claims MODEL_DIM=16384 x 64 layers (the issue's 274 KB file allocated 5.4 GB): the model is
    built on the meta device and compared with the declared tensors before any real allocation."""
    _, qs = tiny_state()
    qs.meta["model"] = {**qs.meta["model"], "model_dim": 16384, "num_layers": 64, "num_heads": 16,
                        "num_kv_heads": 16}
    path = tmp_path / "huge.golf"
    path.write_bytes(encode_artifact(qs, "zlib"))
    import golflib.model.registry as registry
    import golflib.quant.export as export

    built = []
    real = registry.build_model

    def recording(cfg):
        built.append(torch.empty(0).device)  # the device this build allocates on
        return real(cfg)

    monkeypatch.setattr(registry, "build_model", recording)  # meta_model's build
    monkeypatch.setattr(export, "build_model", recording)  # the real build of load_artifact_model
    msg = _expect(ArtifactError, "does not match the tensors the artifact declares", load_artifact_model, path)
    assert str(path) in msg and "parameters" in msg
    assert built == [torch.device("meta")]  # only the meta-device build ran


# ---- silent mismatches ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_tokenizer(embedded_data, tmp_path_factory):
    """A real 256-piece tokenizer trained on decoded val text (smaller than the 1024 the shards were made with)."""
    from golflib.data.loader import load_validation_tokens

    sp = load_sentencepiece(embedded_data["tokenizer_path"])
    val = load_validation_tokens(str(Path(embedded_data["data_path"]) / "*_val_*.bin"), 1)[:60_000].tolist()
    text = sp.decode(val)
    return train_tokenizer(tmp_path_factory.mktemp("tok") / "small_256_bpe", 256, text)


def test_tokenizer_smaller_than_the_shards_is_refused(embedded_data, small_tokenizer, tmp_path):
    """The issue's case: a 256-piece tokenizer on shards made with 1024 pieces scored val_bpb 3.69 instead of 1.71
    (ids >= 256 counted 0 bytes). The shard check names the shard and the id; no manifest is needed."""
    d = copy_dataset(embedded_data, tmp_path / "d")
    (d["manifest"]).unlink()
    data = DataConfig(str(d["data_path"]), str(small_tokenizer))
    msg = _expect(TokenizerError, "holds token id", load_byte_counter, data, 1024)
    assert str(small_tokenizer) in msg and "_val_" in msg and "256 pieces" in msg


def test_tokenizer_is_checked_against_the_manifest(embedded_data, small_tokenizer, tmp_path):
    d = copy_dataset(embedded_data, tmp_path / "d")
    manifest = json.loads(d["manifest"].read_text())
    assert manifest["tokenizers"][0]["model_sha256"]  # golf data prepare records the hash
    good = DataConfig(str(d["data_path"]), str(d["tokenizer_path"]))
    checked = check_tokenizer(good, load_sentencepiece(good.tokenizer_path))
    assert checked["manifest"] == str(d["manifest"].resolve()) and checked["sha256"] and checked["max_id"] == 1023
    # name: another file name than the manifest lists
    renamed = d["tokenizer_path"].with_name("other_name.model")
    renamed.write_bytes(d["tokenizer_path"].read_bytes())
    _expect(TokenizerError, "file name 'other_name.model', the manifest lists", load_byte_counter,
            DataConfig(str(d["data_path"]), str(renamed)), 1024)
    # hash: the manifest records another file's SHA-256 under the same name and vocab size
    manifest["tokenizers"][0]["model_sha256"] = "0" * 64
    d["manifest"].write_text(json.dumps(manifest))
    _expect(TokenizerError, "SHA-256 .* the manifest records 0000", load_byte_counter, good, 1024)
    # vocab size: the manifest says 1024, the tokenizer has 256 pieces (checked before the shards)
    small = d["tokenizer_path"].with_name("small.model")
    small.write_bytes(Path(small_tokenizer).read_bytes())
    manifest["tokenizers"][0]["model_path"] = "tokenizers/small.model"
    manifest["tokenizers"][0].pop("model_sha256")
    d["manifest"].write_text(json.dumps(manifest))
    _expect(TokenizerError, "256 pieces, the manifest's vocab_size is 1024", load_byte_counter,
            DataConfig(str(d["data_path"]), str(small)), 1024)


def test_nonfinite_scale_is_refused_and_golf_eval_exits_2(tmp_path, capsys):
    """NaN and inf in a scale or a float tensor are refused at load; `golf eval` prints `golf: error:` with exit 2
    (it printed NaN with exit 0)."""
    _, qs = tiny_state()
    name = next(k for k in qs.tensors if k.endswith(".scale"))
    for bad in (float("nan"), float("inf")):
        t = qs.tensors[name].clone()
        t[0] = bad
        qs2 = type(qs)(tensors={**qs.tensors, name: t}, meta=qs.meta)
        for codec in ("zlib", "entropy"):
            path = tmp_path / f"nan_{codec}.golf"
            path.write_bytes(encode_artifact(qs2, codec))
            msg = _expect(ArtifactError, "non-finite values", read_artifact, path)
            assert name in msg and str(path) in msg
    assert golf(["eval", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("golf: error: ") and "non-finite" in err


# ---- unclear errors ------------------------------------------------------------------------------------------------
def test_unknown_dtype_name_is_refused():
    _, qs = tiny_state()
    name = next(iter(qs.meta["tensors"]))
    for dtype in ("float128", "__class__", "Tensor"):
        qs.meta["tensors"][name]["dtype"] = dtype
        msg = _expect(ArtifactError, "unknown dtype", decode_artifact, encode_artifact(qs, "zlib"), "d.golf")
        assert name in msg and repr(dtype) in msg
        with pytest.raises(ValueError, match="unknown dtype"):
            dequantize(qs)


def test_deep_json_is_a_clear_error(tmp_path):
    deep = deep_json(200_000)
    cfg = tmp_path / "config.json"
    cfg.write_text(deep)
    _expect(ConfigError, "config.json: JSON nested deeper than", Config.from_json_file, cfg)
    man = tmp_path / "manifest.json"
    man.write_text('{"datasets": ' + deep + "}")
    from golflib.data.prepare import load_manifest

    _expect(ManifestError, "manifest.json: JSON nested deeper", load_manifest, tmp_path)
    _, qs = tiny_state()
    header, sections = split_v2(encode_artifact(qs, "entropy"))
    header["meta"]["deep"] = "PLACEHOLDER"
    import brotli

    hb = brotli.compress(json.dumps(header).replace('"PLACEHOLDER"', deep).encode(), quality=5)
    _expect(ArtifactError, "x.golf header: JSON nested deeper", decode_artifact, join_v2(header, sections,
                                                                                          header_bytes=hb), "x.golf")
    assert parse_json("[[1]]", "ok") == [[1]]
    _expect(GolfError, "non-finite literal NaN", parse_json, '{"a": NaN}', "n.json")


def test_wrong_shape_names_the_tensor():
    """A stored tensor with fewer elements than its declared shape (was: "shape '[7, 11]' is invalid for input of
    size ...")."""
    _, qs = tiny_state()
    name = next(k for k, e in qs.meta["tensors"].items() if e["kind"] == "passthrough" and len(e["shape"]) == 1)
    qs.tensors[name] = qs.tensors[name][:-1].clone()
    msg = _expect(ArtifactError, "has .* elements, the declared shape", decode_artifact, encode_artifact(qs, "zlib"),
                  "w.golf")
    assert repr(name) in msg and "w.golf" in msg


def test_missing_key_names_the_field():
    _, qs = tiny_state()
    name = next(iter(qs.meta["tensors"]))
    del qs.meta["tensors"][name]["kind"]
    msg = _expect(ArtifactError, "metadata lacks 'kind'", decode_artifact, encode_artifact(qs, "zlib"), "k.golf")
    assert repr(name) in msg


def test_model_dim_nonpositive_blames_model_dim():
    for v in (0, -64):
        msg = _expect(ConfigError, "must be >= 1", Config().replace, {"MODEL_DIM": v})
        assert msg.startswith("MODEL_DIM=")


# ---- loose containers and budgets ----------------------------------------------------------------------------------
def test_int8_zlib_container_refuses_trailing_bytes():
    _, qs = tiny_state()
    blob = encode_artifact(qs, "zlib")
    decode_artifact(blob, "ok.golf")
    _expect(ArtifactError, "t.golf: zlib: 7 trailing bytes after the compressed stream", decode_artifact,
            blob + b"garbage", "t.golf")


def test_int8_codes_stored_as_float32_are_refused():
    _, qs = tiny_state()
    name = next(k for k in qs.tensors if k.endswith(".q"))
    qs.tensors[name] = qs.tensors[name].float()
    msg = _expect(ArtifactError, "is float32, expected int8", decode_artifact, encode_artifact(qs, "zlib"), "f.golf")
    assert repr(name) in msg


def test_codes_outside_their_bit_width_are_refused():
    _, qs = tiny_state()
    name = next(k for k in qs.tensors if k.endswith(".q"))
    qs.meta["tensors"][name[:-2]]["bits"] = 4
    _expect(ArtifactError, "do not fit 4 bits", decode_artifact, encode_artifact(qs, "zlib"), "b.golf")


def test_negative_code_bytes_is_refused(tmp_path, capsys):
    _, qs = tiny_state()
    path = tmp_path / "a.golf"
    path.write_bytes(encode_artifact(qs, "zlib"))
    _expect(BudgetError, "code bytes must be a whole number >= 0", budget_report, path, -5)
    assert golf(["quant", "budget", str(path), "--code-bytes", "-5"]) == 2
    assert capsys.readouterr().err.startswith("golf: error: --code-bytes=-5")


def test_limit_above_16MB_is_an_error(tmp_path, capsys):
    """`--limit 17MB` used to warn and pass an artifact the challenge refuses."""
    _, qs = tiny_state()
    path = tmp_path / "a.golf"
    path.write_bytes(encode_artifact(qs, "zlib"))
    assert golf(["quant", "budget", str(path), "--limit", "17MB"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("golf: error: --limit='17MB' is 17,000,000 bytes, above the challenge limit")
    assert parse_limit("15.9MB") == 15_900_000 and parse_limit(16_000_000) == 16_000_000
    _expect(ConfigError, "PRUNE_TARGET_BYTES=17000000", Config().replace, {"PRUNE_TARGET_BYTES": 17_000_000})


def test_pruning_target_is_strict():
    """The limit is strict (< 16,000,000): a state landing exactly on the target is pruned further."""
    _, qs = tiny_state()
    size = lambda s: 10_000 + sum(int((s.tensors[k] != 0).sum()) for k in s.tensors if k.endswith(".q"))  # noqa
    target = size(qs)
    pruned, info = prune_to_target(qs, size, target)
    assert size(pruned) == info["bytes_after"] == target - 1 and info["pruned"] == 1
    same, info = prune_to_target(qs, size, target + 1)
    assert same is qs and info["pruned"] == 0


# ---- lost files ----------------------------------------------------------------------------------------------------
def test_run_dir_guard_refuses_any_existing_output(tmp_path):
    """A directory holding a checkpoint and an artifact (no train.log, no result.json) was overwritten silently."""
    run = tmp_path / "r"
    run.mkdir()
    (run / "final_model.safetensors").write_bytes(b"checkpoint")
    (run / "final_model.int8_zlib.golf").write_bytes(b"artifact")
    msg = _expect(RunDirError, "already holds final_model.int8_zlib.golf, final_model.safetensors",
                  launch_training, run, "cpu-tiny")
    assert sorted(p.name for p in run.iterdir()) == ["final_model.int8_zlib.golf", "final_model.safetensors"]
    assert (run / "final_model.safetensors").read_bytes() == b"checkpoint" and "never overwritten" in msg
    # the training entry point refuses it too, before writing anything (exit 2 through golf.train's CLI)
    proc = subprocess.run([sys.executable, "-m", "golflib.train", "--preset", "cpu-tiny", "--run-dir", str(run)],
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode != 0 and "already holds" in proc.stderr
    assert sorted(p.name for p in run.iterdir()) == ["final_model.int8_zlib.golf", "final_model.safetensors"]


# ---- silent typos --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("typo", ["MIXED_EXPROT", "TIE_EMBEDING", "PRUNE_TARGET_BYTE", "DISABLE_LAYER0_ATN",
                                  "ITERATION"])
def test_environment_typos_are_refused(typo):
    msg = _expect(ConfigError, "match no golflib config field", Config().with_env, {typo: "1"})
    assert typo in msg and "did you mean" in msg


def _typos(name: str) -> set[str]:
    out = {name[:i] + name[i + 1:] for i in range(1, len(name))}  # a letter dropped
    out |= {name[:i] + name[i + 1] + name[i] + name[i + 2:] for i in range(1, len(name) - 1)}  # two swapped
    out |= {name[:i] + "X" + name[i + 1:] for i in range(1, len(name))}  # one replaced
    out.add(name[:-1] if name.endswith("S") else name + "S")  # plural
    return out - set(env_names()) - {""}


def test_every_field_is_guarded_against_typos():
    """The guard is derived from the fields (no hand-written prefix list): every field's one-edit typos are
    refused."""
    missed = {n: sorted(t for t in _typos(n) if not looks_like_ours(t)) for n in env_names()}
    missed = {n: t for n, t in missed.items() if t}
    assert not missed, missed
    assert len(env_names()) > 200


def test_other_tools_environment_passes():
    """Variables of torchrun, CUDA/NCCL, OpenMP, Hugging Face, W&B, Slurm, pip and shells are not ours."""
    foreign = """RANK WORLD_SIZE LOCAL_RANK LOCAL_WORLD_SIZE GROUP_RANK ROLE_RANK MASTER_ADDR MASTER_PORT
    TORCHELASTIC_RUN_ID TORCH_NCCL_ASYNC_ERROR_HANDLING TORCHINDUCTOR_CACHE_DIR CUDA_VISIBLE_DEVICES CUDA_HOME
    CUDA_LAUNCH_BLOCKING NCCL_DEBUG NCCL_IB_DISABLE OMP_NUM_THREADS MKL_NUM_THREADS KMP_AFFINITY PYTHONPATH
    PYTHONHASHSEED PYTORCH_CUDA_ALLOC_CONF HF_HOME HF_TOKEN HF_HUB_OFFLINE TOKENIZERS_PARALLELISM WANDB_MODE
    WANDB_PROJECT MAX_JOBS USE_NINJA USE_CUDA USE_FLASH_ATTENTION FLASH_ATTENTION_FORCE_BUILD TRITON_CACHE_DIR
    SLURM_JOB_ID SLURM_PROCID SLURM_ARRAY_TASK_ID SUBMITIT_FOLDER MPLBACKEND VIRTUAL_ENV CONDA_PREFIX SSL_CERT_FILE
    PIP_FIND_LINKS DATA_DIR INIT_CWD DEVICE_ID HEAD_REF RUN_NAME SEED_NODE GLOBAL_AGENT_HTTP_PROXY
    MATCHED_FINEWEB_REPO_ID GOLF_RECORDS_DIR PATH HOME USER SHELL TERM LANG""".split()
    assert [f for f in foreign if looks_like_ours(f)] == []
    Config().with_env({f: "x" for f in foreign})


# ---- the fuzz run --------------------------------------------------------------------------------------------------
def test_fuzz_hostile_inputs(embedded_data, tmp_path):
    """tests/fuzz_worker.py in a fresh process: a seeded corpus of broken and hostile artifacts (6 containers),
    headers, shards, tokenizers, manifests and config values. Every case must end in a GolfError (or
    FileNotFoundError) naming its file or field — or, for blind byte flips a codec without a checksum cannot see, in
    an artifact that passed every check — within a few seconds; the whole run under an address-space limit, its
    peak RSS at most the larger of 2x a legitimate load and 512 MB above the baseline."""
    out = tmp_path / "fuzz.json"
    proc = subprocess.run([sys.executable, str(HERE / "fuzz_worker.py"), str(out), str(embedded_data["root"]),
                           str(embedded_data["data_path"]), str(embedded_data["tokenizer_path"]), str(tmp_path)],
                          capture_output=True, text=True, timeout=900, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{HERE}"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    rep = json.loads(out.read_text())
    cases = rep["cases"]
    assert len(cases) >= 300
    by_cat = {}
    for c in cases:
        by_cat.setdefault(c["category"], []).append(c)
    assert {"artifact-v1", "artifact-v2", "artifact-bomb", "header", "shard", "tokenizer", "manifest",
            "config", "env"} <= set(by_cat)
    bad = [c for c in cases if c["outcome"] not in ("error", "ok")
           or (c["outcome"] == "ok" and c["must_fail"])
           or (c["outcome"] == "error" and not c["names_subject"])
           or c["seconds"] > 5.0]
    assert not bad, bad[:5]
    assert sum(c["must_fail"] for c in cases) >= 300  # most cases are invalid by construction, not blind flips
    bound = max(2 * rep["legit_peak_bytes"], 512 << 20)
    assert rep["peak_rss_bytes"] - rep["baseline_rss_bytes"] <= bound, rep
    assert rep["address_space_limited"]
