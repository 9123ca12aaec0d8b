"""One working directory for interactive and headless runs: the project root.

JupyterLab starts a notebook's kernel in the notebook's folder (``notebooks/``), papermill in the folder ``golf run``
gives it (the project root). The notebooks' relative paths (``data/``, ``runs/``, ``figures/``) must mean the same
in both, so their first code cell calls :func:`enter_project_root`.
"""

from __future__ import annotations

import os
from pathlib import Path

MARKERS = ("pyproject.toml", "golflib", "notebooks")  # what a golflib checkout's root holds


def project_root(start: str | os.PathLike | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the working directory), at most two levels up, that holds
    every entry of :data:`MARKERS`; None when there is none (a notebook copied elsewhere)."""
    here = Path(start or Path.cwd()).resolve()
    for cand in [here, *here.parents][:3]:
        if all((cand / m).exists() for m in MARKERS):
            return cand
    return None


def enter_project_root() -> Path:
    """Change the working directory to :func:`project_root` when the kernel runs inside a golflib checkout (e.g. in
    ``notebooks/`` under JupyterLab); returns the working directory afterwards. Outside a checkout nothing
    changes."""
    root = project_root()
    if root is not None and root != Path.cwd().resolve():
        os.chdir(root)
    return Path.cwd()
