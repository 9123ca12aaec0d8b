"""The fuzz run of tests/test_input_safety.py (issue 16), in its own process.

    python tests/fuzz_worker.py OUT.json DATA_ROOT DATA_PATH TOKENIZER_PATH TMP_DIR

Builds a seeded corpus of broken and hostile inputs from legitimate tiny ones (tests/hostile.py), loads each through
the entry point a user's command would use, and writes one record per case: category, name, outcome (``error``:
a GolfError or FileNotFoundError; ``ok``; ``crash:<type>`` for anything else), whether the message names the case's
file or field, and seconds. Before the cases the address space is capped (current size + 3 GiB), so an allocation
of the issue's sizes (5.4 GB, 15.8 GiB) fails as a crash instead of passing unnoticed; peak RSS is reported against
the baseline after the legitimate loads.
"""

from __future__ import annotations

import copy
import json
import random
import resource
import shutil
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from golflib.config import Config, env_names
from golflib.data.bytecount import load_byte_counter
from golflib.data.loader import load_validation_tokens
from golflib.data.shards import validate_shard
from golflib.errors import GolfError
from golflib.quant.artifact import _safetensors_bytes, encode_artifact
from golflib.quant.export import load_artifact_model
from golflib.settings.training import DataConfig
from hostile import (brotli_whitespace, copy_dataset, deep_json, join_v2, split_v2, tiny_state,
                     v1_raw_blob, write_shard_raw, zlib_bomb)

V1_CODECS = ("zlib", "zstd", "lzma", "brotli", "brotli+bshf2", "zstd+shuffle2")
HOSTILE_VALUES = [-1, 0, 2 ** 31, 2 ** 62, 1e300, "x", None, [], {}, [1] * 9, [8000, 8000], [[1]], True, 0.5]


def rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def vm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


class Corpus:
    def __init__(self, tmp: Path, seed: int = 1616):
        self.tmp, self.rng, self.cases, self.n = tmp, random.Random(seed), [], 0

    def file(self, data: bytes, suffix: str = ".golf") -> Path:
        self.n += 1
        path = self.tmp / f"case{self.n:04d}{suffix}"
        path.write_bytes(data)
        return path

    def add(self, category: str, name: str, subject: str, fn, must_fail: bool = True) -> None:
        self.cases.append({"category": category, "name": name, "subject": subject, "fn": fn, "must_fail": must_fail})

    def artifact(self, category: str, name: str, data: bytes, must_fail: bool = True) -> None:
        path = self.file(data)
        self.add(category, name, str(path), lambda p=path: load_artifact_model(p), must_fail)

    def flips(self, blob: bytes, k: int, lo: int = 0, hi: int | None = None) -> bytes:
        b = bytearray(blob)
        hi = len(b) if hi is None else hi
        for _ in range(k):
            i = self.rng.randrange(lo, hi)
            b[i] = (b[i] + self.rng.randrange(1, 256)) % 256
        return bytes(b)


def artifacts(c: Corpus) -> list[Path]:
    _, qs = tiny_state()
    legit = []
    for codec in V1_CODECS:
        blob = encode_artifact(copy.deepcopy(qs), codec)
        legit.append(c.file(blob))
        for i in range(10):  # blind flips: a codec without a checksum may decode them into a valid artifact
            c.artifact("artifact-v1", f"{codec} flip {i}", c.flips(blob, c.rng.randint(1, 8), 6), must_fail=False)
        for i in range(5):
            c.artifact("artifact-v1", f"{codec} truncated {i}", blob[:c.rng.randrange(0, len(blob) - 1)])
        for i in range(3):
            c.artifact("artifact-v1", f"{codec} trailing {i}", blob + bytes(c.rng.randrange(256)
                                                                         for _ in range(c.rng.randint(1, 64))))
    blob = encode_artifact(copy.deepcopy(qs), "entropy")
    legit.append(c.file(blob))
    header, sections = split_v2(blob)
    hlen = int.from_bytes(blob[5:9], "little")
    for i in range(12):
        c.artifact("artifact-v2", f"header flip {i}", c.flips(blob, c.rng.randint(1, 4), 9, 9 + hlen), must_fail=False)
    for i in range(12):
        c.artifact("artifact-v2", f"section flip {i}", c.flips(blob, c.rng.randint(1, 4), 9 + hlen))  # CRC-32
    for i in range(5):
        c.artifact("artifact-v2", f"truncated {i}", blob[:c.rng.randrange(0, len(blob) - 1)])
    for i in range(3):
        c.artifact("artifact-v2", f"trailing {i}", blob + b"\0" * c.rng.randint(1, 64))
    for i in range(40):  # one hostile value in a section entry, CRC-32s recomputed so the check reaches it
        h, secs = copy.deepcopy(header), list(sections)
        k = c.rng.randrange(len(secs))
        field = c.rng.choice(["shape", "bits", "kind", "level", "name", "codec"])
        value = c.rng.choice(HOSTILE_VALUES)
        secs[k] = ({**secs[k][0], field: value}, secs[k][1])
        old = sections[k][0][field] if field in sections[k][0] else "absent"
        same = old == value and type(value) is type(old)
        ignored = sections[k][0]["codec"] != "rc" and field != "codec"  # a brotli section's other fields are labels
        other_level = field == "level" and type(value) is int and 0 <= value < 96  # decodes to other codes
        c.artifact("artifact-v2", f"section {k} {field}={str(value)[:20]}", join_v2(h, secs),
                   must_fail=not (same or ignored or other_level))
    names = list(header["meta"]["tensors"])
    for i in range(40):  # one hostile value in the metadata's tensor table
        h = copy.deepcopy(header)
        name = c.rng.choice(names)
        field = c.rng.choice(["kind", "dtype", "shape", "bits", "lqer"])
        value = c.rng.choice(HOSTILE_VALUES + ["float128", "__class__", "per_tensor"])
        old = h["meta"]["tensors"][name].get(field, "absent")
        h["meta"]["tensors"][name][field] = value
        same = old == value and type(old) is type(value)
        c.artifact("artifact-v2", f"meta {name} {field}={str(value)[:20]}", join_v2(h, sections), must_fail=not same)
    for i, (field, value) in enumerate([("model_dim", 16384), ("num_layers", 64), ("vocab_size", 65536),
                                        ("model_dim", -1), ("num_heads", 0), ("mlp_mult", 1e300),
                                        ("vocab_size", "x"), ("model_class", "nope"), ("model_dim", None),
                                        ("num_kv_heads", 3)]):
        h = copy.deepcopy(header)
        h["meta"]["model"][field] = value
        c.artifact("artifact-v2", f"model {field}={value}", join_v2(h, sections))
    h = copy.deepcopy(header)
    h["meta"]["model"] = "not a dict"
    c.artifact("artifact-v2", "model not an object", join_v2(h, sections))
    return legit


def bombs(c: Corpus) -> None:
    _, qs = tiny_state()
    raw = _safetensors_bytes(qs.tensors, qs.meta)
    c.artifact("artifact-bomb", "zlib +64 MB zeros", v1_raw_blob(zlib_bomb(raw, 64 << 20)))
    import zstandard

    zc = zstandard.ZstdCompressor(level=3).compressobj()
    zb = zc.compress(raw) + b"".join(zc.compress(bytes(1 << 20)) for _ in range(64)) + zc.flush()
    c.artifact("artifact-bomb", "zstd +64 MB zeros", v1_raw_blob(zb, "zstd"))
    import lzma

    lc = lzma.LZMACompressor(preset=1)
    lb = lc.compress(raw) + b"".join(lc.compress(bytes(1 << 20)) for _ in range(16)) + lc.flush()
    c.artifact("artifact-bomb", "lzma +16 MB zeros", v1_raw_blob(lb, "lzma"))
    c.artifact("artifact-bomb", "brotli +64 MB", v1_raw_blob(brotli_whitespace(raw, 64 << 20), "brotli"))
    c.artifact("artifact-bomb", "shuffled zstd +64 MB", v1_raw_blob(zb, "zstd+shuffle2"))
    blob = encode_artifact(copy.deepcopy(qs), "entropy")
    header, sections = split_v2(blob)
    c.artifact("artifact-bomb", "v2 header +32 MB", join_v2(header, sections, header_bytes=brotli_whitespace(
        json.dumps(header).encode(), 32 << 20)))
    k = next(i for i, (s, _) in enumerate(sections) if s["codec"] == "rc")
    h, secs = copy.deepcopy(header), list(sections)
    h["meta"]["tensors"][secs[k][0]["name"][:-2]]["shape"] = [8000, 8000]
    secs[k] = ({**secs[k][0], "shape": [8000, 8000]}, b"\x01" * 200)
    c.artifact("artifact-bomb", "rc 8000x8000", join_v2(h, secs))
    r = next(i for i, (s, _) in enumerate(sections) if s["codec"] == "brotli")
    secs = list(sections)
    import brotli

    inner = brotli.decompress(sections[r][1])
    secs[r] = (secs[r][0], brotli_whitespace(inner, 64 << 20))
    c.artifact("artifact-bomb", "rest section +64 MB", join_v2(header, secs))
    h = copy.deepcopy(header)
    h["meta"]["model"].update(model_dim=16384, num_layers=64, num_heads=16, num_kv_heads=16)
    c.artifact("artifact-bomb", "model 16384 x 64 layers", join_v2(h, sections))
    h = copy.deepcopy(header)
    first = next(iter(h["meta"]["tensors"]))
    h["meta"]["tensors"][first]["shape"] = [65536, 65536]
    c.artifact("artifact-bomb", "meta shape 65536^2", join_v2(h, sections))


def headers(c: Corpus) -> None:
    """Hostile safetensors headers inside a well-formed version-1 zlib container."""
    _, qs = tiny_state()
    raw = _safetensors_bytes(qs.tensors, qs.meta)
    hlen = int.from_bytes(raw[:8], "little")
    st = json.loads(raw[8:8 + hlen])
    data = raw[8 + hlen:]
    first = next(k for k in st if k != "__metadata__")

    def rebuild(h: dict | str, payload: bytes = data, hl: int | None = None) -> bytes:
        text = (h if isinstance(h, str) else json.dumps(h)).encode()
        return v1_raw_blob(zlib.compress((hl if hl is not None else len(text)).to_bytes(8, "little") + text + payload,
                                         9))

    cases = {
        "hlen 2^63": rebuild(st, hl=2 ** 63), "hlen past payload": rebuild(st, hl=len(raw) * 4),
        "not an object": rebuild("[1, 2]"), "deep": rebuild(deep_json(100_000)), "not json": rebuild("{{{"),
        "no golf metadata": rebuild({k: v for k, v in st.items() if k != "__metadata__"}),
        "metadata not strings": rebuild({**st, "__metadata__": {"golf": 5}}),
        "golf metadata deep": rebuild({**st, "__metadata__": {"golf": deep_json(100_000)}}),
        "golf metadata not json": rebuild({**st, "__metadata__": {"golf": "{"}}),
        "format": rebuild({**st, "__metadata__": {"golf": json.dumps({**qs.meta, "format": "other"})}}),
    }
    for field, value in [("dtype", "F128"), ("dtype", 5), ("shape", [1e9]), ("shape", [-1]), ("shape", "x"),
                         ("shape", [100000, 100000]), ("data_offsets", [0]), ("data_offsets", [10, 5]),
                         ("data_offsets", [0, 2 ** 62]), ("data_offsets", [-8, 0])]:
        cases[f"{first} {field}={value}"] = rebuild({**st, first: {**st[first], field: value}})
    cases["overlap"] = rebuild({k: ({**v, "data_offsets": [0, v["data_offsets"][1] - v["data_offsets"][0]]}
                                    if k != "__metadata__" else v) for k, v in st.items()})
    cases["data short"] = rebuild(st, payload=data[:-4])
    cases["data long"] = rebuild(st, payload=data + b"\0" * 4)
    for name, blob in cases.items():
        c.artifact("header", name, blob)


def shards(c: Corpus, tmp: Path) -> None:
    rng = np.random.default_rng(7)
    tokens = rng.integers(0, 1024, 4000).astype(np.uint16)
    tokens[0] = 1
    d = tmp / "shards"
    d.mkdir()

    def case(name: str, path: Path, must_fail: bool = True) -> None:
        def fn(p=path):
            validate_shard(p, 1024)
            load_validation_tokens(str(p), 16, 1024)
        c.add("shard", name, str(path), fn, must_fail)

    base = write_shard_raw(d / "fine_val_000000.bin", tokens=tokens)
    blob = base.read_bytes()
    variants = {"magic": dict(magic=1), "version": dict(version=2), "count -1": dict(num_tokens=-1),
                "count 2^31-1": dict(num_tokens=2 ** 31 - 1), "count +1": dict(num_tokens=4001),
                "count -1 short": dict(num_tokens=3999)}
    for i, (name, kw) in enumerate(variants.items()):
        case(name, write_shard_raw(d / f"v{i}_val_000000.bin", tokens=tokens, **kw))
    case("id >= vocab", write_shard_raw(d / "ids_val_000000.bin", tokens=np.r_[tokens, [5000]].astype(np.uint16)))
    case("empty file", c.file(b"", ".bin"))
    case("header only, 0 tokens", write_shard_raw(d / "h0_val_000000.bin"))
    case("trailing byte", write_shard_raw(d / "tb_val_000000.bin", tokens=tokens, extra=b"\0"))
    for i in range(8):
        cut = c.file(blob[:c.rng.randrange(0, len(blob) - 1)], ".bin")
        case(f"truncated {i}", cut)
    for i in range(8):
        case(f"header flip {i}", c.file(c.flips(blob, 1, 0, 12), ".bin"))
    for i in range(6):  # flips in the token data: ids may stay valid
        case(f"data flip {i}", c.file(c.flips(blob, 2, 1024), ".bin"), must_fail=False)
    case("missing", d / "nothing_val_000000.bin")


def tokenizers(c: Corpus, data_root: Path, data_path: Path, tok_path: Path, tmp: Path) -> None:
    ds = copy_dataset({"root": data_root, "data_path": data_path, "tokenizer_path": tok_path}, tmp / "ds")
    good = ds["tokenizer_path"].read_bytes()
    m = json.loads(ds["manifest"].read_text())
    from golflib.data.tokcheck import file_sha256

    m["tokenizers"][0].setdefault("model_sha256", file_sha256(ds["tokenizer_path"]))  # as golf data prepare writes
    manifest = json.dumps(m).encode()
    data = DataConfig(str(ds["data_path"]), str(ds["tokenizer_path"]))

    def loading(tokenizer: bytes = good, manifest_text: bytes = manifest):
        """A case: write this tokenizer and manifest into the dataset copy, then score-load it."""
        def fn():
            ds["tokenizer_path"].write_bytes(tokenizer)
            ds["manifest"].write_bytes(manifest_text)
            load_byte_counter(data, 1024)
        return fn

    for i in range(8):
        c.add("tokenizer", f"flip {i}", str(ds["tokenizer_path"]), loading(c.flips(good, c.rng.randint(1, 6))))
    for i in range(4):
        c.add("tokenizer", f"truncated {i}", str(ds["tokenizer_path"]), loading(good[:c.rng.randrange(len(good))]))
    c.add("tokenizer", "empty", str(ds["tokenizer_path"]), loading(b""))
    c.add("tokenizer", "text", str(ds["tokenizer_path"]), loading(b"hello world\n" * 100))
    c.add("tokenizer", "random", str(ds["tokenizer_path"]), loading(bytes(c.rng.randrange(256) for _ in range(5000))))
    c.add("tokenizer", "appended", str(ds["tokenizer_path"]), loading(good + b"\0" * 16))
    mpath = str(ds["manifest"])
    variants = {"deep": deep_json(50_000).encode(), "not json": b"{", "list": b"[]", "NaN": b'{"datasets": NaN}',
                "datasets not list": json.dumps({**m, "datasets": {}}).encode()}
    for field, value in [("vocab_size", "x"), ("vocab_size", 512), ("vocab_size", None), ("model_sha256", 5),
                         ("model_sha256", "0" * 64), ("model_path", "tokenizers/other.model")]:
        mm = copy.deepcopy(m)
        mm["tokenizers"][0][field] = value
        variants[f"tokenizer {field}={value}"] = json.dumps(mm).encode()
    mm = copy.deepcopy(m)
    mm["tokenizers"] = []
    variants["tokenizer not listed"] = json.dumps(mm).encode()
    for name, text in variants.items():
        must = not name.startswith("tokenizer vocab_size=None")
        c.add("manifest", name, mpath if name not in ("tokenizer model_path=tokenizers/other.model",)
              else str(ds["tokenizer_path"]), loading(manifest_text=text), must)


def configs(c: Corpus) -> None:
    import typing

    from golflib.config import GROUPS, _field_index

    names = env_names()
    index = _field_index()
    for i in range(120):
        field = c.rng.choice(names)
        group, _ = index[field.lower()]
        typ = typing.get_type_hints(GROUPS[group])[field.lower()]
        value = c.rng.choice(HOSTILE_VALUES + ["nan", "inf", "1e999", "", "x" * 1000, -2 ** 63])
        must = value is None or value == {} or value == [[1]] or (typ is float and value in ("nan", "inf", "1e999"))
        path = c.file(json.dumps({"config": {group: {field.lower(): value}}, "meta": {}}).encode(), ".json")
        c.add("config", f"{field}={str(value)[:20]}", field,
              lambda p=path: Config.from_json_file(p), must_fail=must)
    for name, text in {"deep": deep_json(100_000), "list": "[1]", "not json": "{", "binary": "\x00\xff",
                       "NaN": '{"train": {"iterations": NaN}}', "unknown field": '{"model": {"num_layer": 3}}',
                       "unknown group": '{"modle": {"num_layers": 3}}'}.items():
        path = c.file(text.encode("utf-8", "surrogatepass"), ".json")
        subject = {"unknown field": "num_layer", "unknown group": "modle"}.get(name, str(path))
        c.add("config", f"file {name}", subject, lambda p=path: Config.from_json_file(p))
    c.add("config", "missing file", str(c.tmp / "nope.json"), lambda: Config.from_json_file(c.tmp / "nope.json"))
    for i in range(40):
        field = c.rng.choice(names)
        k = c.rng.randrange(1, len(field))
        typo = c.rng.choice([field[:k] + field[k + 1:], field + "S", field[:k] + "Q" + field[k + 1:]])
        if typo in names:
            continue
        c.add("env", f"typo {typo}", typo, lambda t=typo: Config().with_env({t: "1"}))


def run(out: Path, data_root: Path, data_path: Path, tok_path: Path, tmp: Path) -> None:
    t_all = time.perf_counter()
    work = tmp / "fuzz"
    work.mkdir()
    c = Corpus(work)
    legit = artifacts(c)
    bombs(c)
    headers(c)
    shards(c, work)
    tokenizers(c, data_root, data_path, tok_path, work)
    configs(c)
    base0 = rss_bytes()
    for p in legit:  # the legitimate loads the bound is relative to
        load_artifact_model(p)
    load_byte_counter(DataConfig(str(data_path), str(tok_path)), 1024)
    legit_peak = rss_bytes() - base0
    baseline = rss_bytes()
    limit = vm_bytes() + (3 << 30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    records = []
    for case in c.cases:
        t0 = time.perf_counter()
        try:
            case["fn"]()
            outcome, msg = "ok", ""
        except (GolfError, FileNotFoundError) as e:
            outcome, msg = "error", str(e)
        except BaseException as e:  # noqa: BLE001 - what the test must not see
            outcome, msg = f"crash:{type(e).__name__}", str(e)[:500]
        records.append({"category": case["category"], "name": case["name"], "subject": case["subject"],
                        "must_fail": case["must_fail"], "outcome": outcome, "message": msg[:300],
                        "names_subject": case["subject"] in msg or case["subject"].upper() in msg,
                        "seconds": time.perf_counter() - t0})
    out.write_text(json.dumps({"cases": records, "baseline_rss_bytes": baseline, "peak_rss_bytes": rss_bytes(),
                               "legit_peak_bytes": legit_peak, "address_space_limited": True,
                               "address_space_limit_bytes": limit,
                               "total_seconds": time.perf_counter() - t_all}, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    run(*(Path(a) for a in sys.argv[1:6]))
