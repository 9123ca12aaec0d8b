"""The FineWeb downloader against a local fake hub (real huggingface_hub client, no network)."""

import json
import os

import numpy as np
import pytest

from fakehub import serve_repo
from golflib.data.fineweb import StaleManifestError, fetch_fineweb
from golflib.data.shards import validate_shard, write_shard


def make_remote(root, name="fineweb10B_sp1024", files_train=3, files_val=1, tokens=50, prefix="datasets"):
    base = root / prefix
    ds = base / "datasets" / name
    for i in range(files_val):
        write_shard(ds / f"fineweb_val_{i:06d}.bin", np.arange(tokens) % 1024)
    for i in range(files_train):
        write_shard(ds / f"fineweb_train_{i:06d}.bin", (np.arange(tokens) + i + 1) % 1024)
    (base / "tokenizers").mkdir(parents=True, exist_ok=True)
    (base / "tokenizers" / "fineweb_1024_bpe.model").write_bytes(b"sp-model")
    (base / "tokenizers" / "fineweb_1024_bpe.vocab").write_bytes(b"sp-vocab")
    manifest = {
        "version": "10B", "num_docs": 10, "num_val_docs": 5,
        "tokenizers": [{"name": "sp_bpe_1024", "kind": "sentencepiece_bpe", "vocab_size": 1024, "bos_id": 1,
                        "eos_id": 2, "model_path": "tokenizers/fineweb_1024_bpe.model",
                        "vocab_path": "tokenizers/fineweb_1024_bpe.vocab"}],
        "datasets": [{"name": name, "tokenizer_name": "sp_bpe_1024", "path": f"datasets/{name}",
                      "train_glob": f"datasets/{name}/fineweb_train_*.bin",
                      "val_glob": f"datasets/{name}/fineweb_val_*.bin", "vocab_size": 1024,
                      "stats": {"files_val": files_val, "files_train": files_train,
                                "tokens_val": tokens * files_val}}],
    }
    (base / "manifest.json").write_text(json.dumps(manifest))
    return manifest


@pytest.fixture()
def hub(tmp_path):
    remote = tmp_path / "remote"
    make_remote(remote)
    endpoint, requests, server = serve_repo(remote)
    yield {"endpoint": endpoint, "requests": requests, "remote": remote, "cache": str(tmp_path / "hfcache")}
    server.shutdown()


def test_fetch_downloads_manifest_driven_files(tmp_path, hub):
    local = tmp_path / "data"
    out = fetch_fineweb("sp1024", 2, local, repo_id="owner/pg", endpoint=hub["endpoint"], cache_dir=hub["cache"],
                        echo=None)
    ds = local / "datasets" / "fineweb10B_sp1024"
    assert sorted(p.name for p in ds.iterdir()) == ["fineweb_train_000000.bin", "fineweb_train_000001.bin",
                                                    "fineweb_val_000000.bin"]
    assert (local / "tokenizers" / "fineweb_1024_bpe.model").read_bytes() == b"sp-model"
    for p in ds.iterdir():
        assert not p.is_symlink()  # the cache symlink was resolved to the blob
        validate_shard(p, 1024)
        assert os.stat(p).st_nlink == 2  # hard link into the hub cache's blob
    assert len(out["downloaded"]) == 5 and out["skipped"] == []
    manifest = json.loads((local / "manifest.json").read_text())
    entry = manifest["datasets"][0]
    assert entry["fetched_from"] == {"repo_id": "owner/pg", "remote_root": "datasets"}
    # fetched via the hub protocol: a HEAD for metadata and a GET per file
    assert ("GET", "datasets/datasets/fineweb10B_sp1024/fineweb_train_000001.bin") in hub["requests"]

    # second call: existing files are skipped (no GET for them); one more shard is fetched
    hub["requests"].clear()
    out2 = fetch_fineweb("sp1024", 3, local, repo_id="owner/pg", endpoint=hub["endpoint"], cache_dir=hub["cache"],
                         echo=None)
    assert out2["downloaded"] == ["datasets/fineweb10B_sp1024/fineweb_train_000002.bin"]
    gets = [p for m, p in hub["requests"] if m == "GET" and p.endswith(".bin")]
    assert gets == ["datasets/datasets/fineweb10B_sp1024/fineweb_train_000002.bin"]


def test_fetch_refuses_more_shards_than_exist(tmp_path, hub):
    with pytest.raises(ValueError, match="sp1024 only has 3 training shards on owner/pg, requested 4"):
        fetch_fineweb("sp1024", 4, tmp_path / "data", repo_id="owner/pg", endpoint=hub["endpoint"],
                      cache_dir=hub["cache"], echo=None)
    assert not (tmp_path / "data" / "datasets").exists()
    with pytest.raises(ValueError, match="dataset fineweb10B_sp8192 not found"):
        fetch_fineweb("sp8192", 1, tmp_path / "data", repo_id="owner/pg", endpoint=hub["endpoint"],
                      cache_dir=hub["cache"], echo=None)


def test_stale_manifest_from_another_repo_is_refused(tmp_path, hub):
    local = tmp_path / "data"
    fetch_fineweb("sp1024", 1, local, repo_id="owner/pg", endpoint=hub["endpoint"], cache_dir=hub["cache"],
                  echo=None)
    with pytest.raises(StaleManifestError, match="stale"):
        fetch_fineweb("sp1024", 1, local, repo_id="someone/else", endpoint=hub["endpoint"], cache_dir=hub["cache"],
                      echo=None)
    # an official-script manifest (no provenance) with other stats is refused too
    m = json.loads((local / "manifest.json").read_text())
    del m["datasets"][0]["fetched_from"]
    m["datasets"][0]["stats"]["files_train"] = 99
    (local / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StaleManifestError, match="another export"):
        fetch_fineweb("sp1024", 1, local, repo_id="owner/pg", endpoint=hub["endpoint"], cache_dir=hub["cache"],
                      echo=None)
    out = fetch_fineweb("sp1024", 1, local, repo_id="owner/pg", endpoint=hub["endpoint"], cache_dir=hub["cache"],
                        echo=None, refresh_manifest=True)
    assert out["dataset"] == "fineweb10B_sp1024"


def test_fetch_keeps_other_datasets_and_skip_manifest(tmp_path, hub):
    local = tmp_path / "data"
    local.mkdir()
    (local / "manifest.json").write_text(json.dumps({"datasets": [{"name": "wikivital_sp1024", "stats": {}}],
                                                     "tokenizers": []}))
    fetch_fineweb("sp1024", 1, local, repo_id="owner/pg", endpoint=hub["endpoint"], cache_dir=hub["cache"],
                  echo=None)
    names = [d["name"] for d in json.loads((local / "manifest.json").read_text())["datasets"]]
    assert names == ["wikivital_sp1024", "fineweb10B_sp1024"]
    hub["requests"].clear()
    fetch_fineweb("sp1024", 1, local, repo_id="owner/pg", endpoint=hub["endpoint"], cache_dir=hub["cache"],
                  echo=None, skip_manifest=True)
    assert hub["requests"] == []  # everything local: no request at all


def test_fetch_caseops_dataset_brings_its_byte_sidecar(tmp_path):
    """A CaseOps-shaped hub (#1729's `romeerp/parameter-golf-caseops-v1` layout): the manifest declares
    ``val_bytes_glob``, the sidecars come down with the val shards, and they load aligned with the val stream."""
    from golflib.data.loader import load_val_byte_sidecar, load_validation_tokens

    name = "fineweb10B_sp8192_lossless_caps_caseops_v1_reserved"
    remote = tmp_path / "remote"
    manifest = make_remote(remote, name=name, files_train=1, files_val=2, tokens=64)
    ds = remote / "datasets" / "datasets" / name
    for i in range(2):
        toks = np.arange(64) % 1024
        toks[::16] = 1  # documents open with BOS
        write_shard(ds / f"fineweb_val_{i:06d}.bin", toks)
        write_shard(ds / f"fineweb_val_bytes_{i:06d}.bin", np.where(toks == 1, 0, 3))
    manifest["datasets"][0]["val_bytes_glob"] = f"datasets/{name}/fineweb_val_bytes_*.bin"
    (remote / "datasets" / "manifest.json").write_text(json.dumps(manifest))
    endpoint, _, server = serve_repo(remote)
    try:
        local = tmp_path / "data"
        fetch_fineweb("sp8192_lossless_caps_caseops_v1_reserved", 1, local, repo_id="romeerp/pg", endpoint=endpoint,
                      cache_dir=str(tmp_path / "hfcache"), echo=None)
    finally:
        server.shutdown()
    got = local / "datasets" / name
    assert sorted(p.name for p in got.glob("fineweb_val_bytes_*.bin")) == ["fineweb_val_bytes_000000.bin",
                                                                           "fineweb_val_bytes_000001.bin"]
    val = load_validation_tokens(str(got / "fineweb_val_*.bin"), 16)  # skips sidecars
    side = load_val_byte_sidecar(str(got / "fineweb_val_*.bin"), str(got / "fineweb_val_bytes_*.bin"), val.numel())
    assert val.numel() == 113 and int(side.sum()) == 3 * int((val != 1).sum())
