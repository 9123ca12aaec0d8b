"""CaseOps (SPEC §3.F3): the records' encoding, exact inversion, and the original-byte counts of the val sidecar."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golflib.data.caseops import ALLCAPS, CAPNEXT, ESC, OPERATORS, TITLE, CaseOpsError, decode, encode, \
    original_byte_counts

FIXTURE = json.loads((Path(__file__).parents[1] / "fixtures" / "caseops_record.json").read_text())


@pytest.mark.parametrize("case", FIXTURE["cases"], ids=lambda c: repr(c["text"])[:30])
def test_encoding_and_byte_counts_are_the_records(case):
    """67 strings (adversarial and random over letters, operators, non-ASCII, control characters): the encoding and
    the per-piece original byte counts #1855's own code gives, and the exact inverse."""
    assert encode(case["text"]) == case["encoded"]
    assert decode(case["encoded"]) == case["text"]
    assert original_byte_counts(case["pieces"]) == case["counts"]
    assert sum(case["counts"]) == len(case["text"].encode("utf-8"))


def test_rules_by_example():
    assert encode("The NASA iPhone McDonald A") == (f"{TITLE}the {ALLCAPS}nasa i{CAPNEXT}phone "
                                                    f"{TITLE}mc{CAPNEXT}donald {TITLE}a")
    assert encode("Straße") == f"{TITLE}straße"  # the run is ASCII letters only: ß ends it
    assert encode(f"x{TITLE}y{ESC}") == f"x{ESC}{TITLE}y{ESC}{ESC}"
    assert encode("") == "" and decode("") == ""
    with pytest.raises(TypeError):
        encode(b"bytes")


@pytest.mark.parametrize("bad,where", [
    (f"{TITLE}", "dangling TITLE"), (f"a{TITLE}b", "TITLE inside a word"), (f"{TITLE} a", "not followed"),
    (f"{CAPNEXT}{CAPNEXT}a", "CAPNEXT twice"), (f"x{ESC}", "dangling ESC"), (f"{ALLCAPS}{TITLE}a", "after another"),
    (f"{TITLE}{ESC}x", "escaped character cannot follow TITLE"),
])
def test_malformed_text_is_refused(bad, where):
    with pytest.raises(CaseOpsError, match=where):
        decode(bad)


def test_byte_counts_across_pieces():
    t = encode(f"A{ESC}é")  # TITLE a ESC ESC é
    assert t == f"{TITLE}a{ESC}{ESC}é"
    assert original_byte_counts([t[:3], t[3:]]) == [1, 3 + 2]  # the escape spans the cut
    assert original_byte_counts([t]) == [6] and original_byte_counts([]) == []
    with pytest.raises(CaseOpsError, match="dangling ESC"):
        original_byte_counts([t[:3]])


def test_round_trip_on_the_embedded_corpus():
    from golflib.data.corpus import doc_texts, load_embedded_docs

    docs = doc_texts(load_embedded_docs())
    assert len(docs) > 10_000
    n_ops = 0
    for doc in docs:
        t = encode(doc)
        assert decode(t) == doc
        assert sum(original_byte_counts([t])) == len(doc.encode("utf-8"))
        n_ops += sum(t.count(o) for o in OPERATORS)
    assert n_ops > 100_000  # English Wikipedia: capitals everywhere


TEXT = st.text(alphabet=st.one_of(st.characters(exclude_categories=("Cs",)),  # lone surrogates are not text
                                   st.sampled_from(list(OPERATORS) + list("aZqQ \n"))))


@settings(max_examples=400, deadline=None, derandomize=True)  # the same 400 strings on every machine
@given(TEXT)
def test_decode_inverts_encode_on_any_text(s):
    t = encode(s)
    assert decode(t) == s
    cut = len(t) // 2
    assert sum(original_byte_counts([t[:cut], t[cut:]])) == len(s.encode("utf-8"))


def test_the_lut_guard_knows_the_same_operators():
    """golflib.data.luts refuses CaseOps tokenizers by these pieces (kept there so the training core need not
    import the transform): they must be exactly the transform's operators."""
    from golflib.data.luts import CASEOPS_PIECES

    assert CASEOPS_PIECES == OPERATORS == (TITLE, ALLCAPS, CAPNEXT, ESC)
