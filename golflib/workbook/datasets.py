"""Helpers behind ``notebooks/00_data.ipynb``: prepare or inspect a dataset and report its statistics."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from golflib.data.bytecount import load_byte_counter
from golflib.data.corpus import EMBEDDED_NAME
from golflib.data.loader import load_validation_tokens
from golflib.data.prepare import dataset_paths, find_dataset, load_manifest, prepare_dataset
from golflib.data.shards import list_shards, load_shard
from golflib.data.stats import doc_lengths
from golflib.eval.bpb import unigram_bpb
from golflib.settings.training import DataConfig


def dataset_name(corpus: str, vocab_size: int, caseops: bool = False) -> str:
    """Name ``golf data prepare`` gives a corpus export (``wikivital_sp1024`` for the embedded corpus,
    ``wikivital_sp1024_caseops`` for its CaseOps export)."""
    stem = EMBEDDED_NAME if corpus == "embedded" else Path(corpus).stem
    return f"{stem}_sp{vocab_size}" + ("_caseops" if caseops else "")


def load_or_prepare(data_root: str | os.PathLike, corpus: str = "embedded", vocab_size: int = 1024,
                    val_fraction: float = 0.05, prepare: bool = True, caseops: bool = False) -> dict[str, Any]:
    """The manifest entry of the dataset, exporting it first when ``prepare`` (a no-op if already up to date);
    ``caseops``: the CaseOps export with its val byte sidecar (:func:`golflib.data.prepare.prepare_dataset`)."""
    if prepare:
        return prepare_dataset(data_root, corpus=corpus, vocab_size=vocab_size, val_fraction=val_fraction,
                               caseops=caseops)
    return find_dataset(load_manifest(data_root), dataset_name(corpus, vocab_size, caseops))


def dataset_report(data_root: str | os.PathLike, entry: dict[str, Any]) -> dict[str, Any]:
    """Stats of a prepared dataset: manifest stats plus bytes/token, document lengths and the unigram val_bpb
    (unigram fitted on the first train shard, scored on the full val stream)."""
    data_path, tok_path = dataset_paths(data_root, entry["name"])
    stats = dict(entry.get("stats", {}))
    val_glob, train_glob = str(data_path / "*_val_*.bin"), str(data_path / "*_train_*.bin")
    bos = int(entry.get("bos_id", 1))
    val_len, train_len = doc_lengths(val_glob, bos), doc_lengths(train_glob, bos)
    val = load_validation_tokens(val_glob, 1, entry["vocab_size"])
    side_glob = str(Path(data_root) / entry["val_bytes_glob"]) if entry.get("val_bytes_glob") else ""
    # CaseOps: original bytes from the sidecar (SPEC §1.4); else the tokenizer's LUTs
    luts = load_byte_counter(DataConfig(str(data_path), str(tok_path), val_files=val_glob,
                                        val_bytes_files=side_glob, caseops_enabled=bool(side_glob)),
                             entry["vocab_size"], bos)
    report = {
        "dataset": entry["name"],
        "data_path": str(data_path),
        "tokenizer_path": str(tok_path),
        **stats,
        "val_bytes_per_token": stats["bytes_val"] / max(stats["tokens_val"] - 1, 1) if "bytes_val" in stats else None,
        "val_doc_len_mean": float(val_len.mean()),
        "train_doc_len_mean": float(train_len.mean()),
        "unigram_val_bpb": unigram_bpb(load_shard(list_shards(train_glob)[0]), val, luts, entry["vocab_size"]),
        "license": entry.get("license"),
    }
    return {"report": report, "val_doc_lengths": val_len, "train_doc_lengths": train_len}


def figure_dirs(figures_root: str | os.PathLike, notebook: str, run_dir: str | os.PathLike | None) -> list[Path]:
    """Where a notebook's figures go: ``figures/<notebook>/`` and ``<run_dir>/figures/``."""
    dirs = [Path(figures_root) / notebook]
    if run_dir:
        dirs.append(Path(run_dir) / "figures")
    return dirs
