import numpy as np
import pytest

from golflib.data.shards import (HEADER_BYTES, SHARD_MAGIC, ShardError, list_shards, load_shard, read_header,
                                 shard_stats, validate_shard, write_shard)


def test_round_trip_and_memmap(tmp_path):
    rng = np.random.default_rng(0)
    toks = rng.integers(0, 1024, size=5000, dtype=np.int64)
    p = tmp_path / "x_train_000000.bin"
    n = write_shard(p, toks)
    assert n == p.stat().st_size == 1024 + 2 * 5000
    header = np.fromfile(p, dtype="<i4", count=256)
    assert header[0] == 20240520 and header[1] == 1 and header[2] == 5000 and not header[3:].any()
    back = load_shard(p, vocab_size=1024)
    assert isinstance(back, np.memmap) and back.dtype == np.dtype("<u2")
    np.testing.assert_array_equal(np.asarray(back), toks)
    np.testing.assert_array_equal(load_shard(p, mmap=False), toks)
    assert validate_shard(p, 1024).num_tokens == 5000


def _corrupt(tmp_path, name, mutate):
    p = tmp_path / name
    write_shard(p, np.arange(100) % 50)
    raw = bytearray(p.read_bytes())
    p.write_bytes(bytes(mutate(raw)))
    return p


def _set_int(raw, idx, val):
    raw[4 * idx:4 * idx + 4] = np.int32(val).tobytes()
    return raw


@pytest.mark.parametrize("name,mutate,match", [
    ("magic.bin", lambda r: _set_int(r, 0, 12345), r"wrong magic 12345, expected 20240520"),
    ("version.bin", lambda r: _set_int(r, 1, 2), r"unsupported shard version 2, expected 1"),
    ("truncated.bin", lambda r: r[:-10], r"truncated: size 1214 bytes != 1024 \+ 2\*num_tokens = 1224"),
    ("padded.bin", lambda r: r + b"\0\0", r"trailing bytes: size 1226 bytes != 1024 \+ 2\*num_tokens = 1224"),
    ("count.bin", lambda r: _set_int(r, 2, 101), r"size 1224 bytes != 1024 \+ 2\*num_tokens = 1226"),
    ("short.bin", lambda r: r[:500], r"truncated: 500 bytes, expected at least the 1024-byte header"),
])
def test_bad_inputs_name_file_and_expectation(tmp_path, name, mutate, match):
    p = _corrupt(tmp_path, name, mutate)
    with pytest.raises(ShardError, match=match) as e:
        validate_shard(p)
    assert str(p) in str(e.value)


def test_token_id_out_of_vocab(tmp_path):
    p = tmp_path / "v.bin"
    write_shard(p, np.array([1, 5, 1030, 7]))
    with pytest.raises(ShardError, match=r"token id 1030 at index 2 is >= vocab_size 1024") as e:
        load_shard(p, vocab_size=1024)
    assert str(p) in str(e.value)
    assert load_shard(p, vocab_size=2048).size == 4


def test_writer_rejects_unrepresentable(tmp_path):
    with pytest.raises(ShardError, match=r"\[0, 65535\]"):
        write_shard(tmp_path / "a.bin", np.array([70000]))
    with pytest.raises(ShardError, match="1-D"):
        write_shard(tmp_path / "b.bin", np.zeros((2, 2), dtype=np.int64))
    assert not (tmp_path / "a.bin").exists()


def test_missing_and_glob(tmp_path):
    with pytest.raises(ShardError, match="no such shard file"):
        read_header(tmp_path / "nope.bin")
    with pytest.raises(FileNotFoundError, match="no shard files match"):
        list_shards(str(tmp_path / "*_val_*.bin"))
    for name in ("d_val_000001.bin", "d_val_000000.bin", "d_val_bytes_000000.bin"):
        write_shard(tmp_path / name, np.arange(3))
    assert [p.name for p in list_shards(str(tmp_path / "*_val_*.bin"))] == ["d_val_000000.bin", "d_val_000001.bin"]


def test_stats(tmp_path):
    p = tmp_path / "s.bin"
    write_shard(p, np.array([1, 10, 11, 1, 10, 10]))
    st = shard_stats(p, vocab_size=64)
    assert st["magic"] == SHARD_MAGIC and st["num_tokens"] == 6 and st["file_bytes"] == HEADER_BYTES + 12
    assert st["bos_count"] == 2 and st["distinct_ids"] == 3 and st["max_id"] == 11
    assert st["top_ids"][0] == [10, 3]
    # entropy of {1: 2/6, 10: 3/6, 11: 1/6}
    p_ = np.array([2, 3, 1]) / 6
    assert st["unigram_entropy_bits"] == pytest.approx(float(-(p_ * np.log2(p_)).sum()))
