"""Every ``SPEC §…`` and ``DESIGN.md "…"`` reference in the package, the notebooks and the README resolves inside
the repository: docs/SPEC.md (the challenge reference: rules, the val_bpb definition, the technique catalogue with
PR numbers, legality, records) and docs/DESIGN.md (the house plan)."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO

SPEC = (REPO / "docs" / "SPEC.md").read_text(encoding="utf-8")
DESIGN = (REPO / "docs" / "DESIGN.md").read_text(encoding="utf-8")
REF = re.compile(r"SPEC §([0-9]+(?:\.[0-9A-Z]+)?(?:\.?[A-Z][0-9]+)?)")


def sources() -> list[Path]:
    files = [p for p in (REPO / "golflib").rglob("*.py")] + list((REPO / "notebooks").glob("*.ipynb"))
    return files + [REPO / "README.md"]


def sections(text: str) -> dict[str, str]:
    """``{"1.4": body, "3.B": body, "3": body}`` from ``## 3.`` / ``### 3.B`` headings."""
    out, key, body = {}, None, []
    for line in text.splitlines():
        m = re.match(r"#{2,3} ([0-9]+(?:\.[0-9A-Z]+)?)\.? ", line)
        if m:
            if key:
                out[key] = "\n".join(body)
            key, body = m.group(1), []
        body.append(line)
    out[key] = "\n".join(body)
    return out


SECTIONS = sections(SPEC)


def resolves(ref: str) -> bool:
    """``1.4`` a heading; ``3.B13`` the bold item ``**B13`` inside heading 3.B; ``3.F3`` likewise."""
    if ref in SECTIONS:
        return True
    m = re.fullmatch(r"([0-9]+)\.([A-Z])([0-9]+)", ref)
    return bool(m) and f"**{m.group(2)}{m.group(3)} " in SECTIONS.get(f"{m.group(1)}.{m.group(2)}", "")


def test_every_spec_reference_resolves_in_docs():
    refs = {(p.relative_to(REPO).as_posix(), r) for p in sources() for r in REF.findall(p.read_text("utf-8"))}
    assert len(refs) > 100  # the package cites the reference throughout
    missing = sorted((f, r) for f, r in refs if not resolves(r))
    assert missing == [], missing


def test_the_resolver_is_not_vacuous():
    assert resolves("1.4") and resolves("3.F3") and resolves("3.B13") and resolves("7.2")
    assert not resolves("1.9") and not resolves("3.F99") and not resolves("3.Q")


def test_design_references_resolve():
    """A quoted name is a heading of docs/DESIGN.md or one of its bold terms."""
    headings = [h.lower() for h in re.findall(r"^#+ (.+)$", DESIGN, re.M)]
    names = [(p, n) for p in sources() for n in re.findall(r'DESIGN\.md "([^"]+)"', p.read_text("utf-8"))]
    assert len(names) >= 4
    for p, name in names:
        assert any(name.lower() in h for h in headings) or f"**{name.lower()}**" in DESIGN.lower(), (p, name)
