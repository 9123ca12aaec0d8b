"""``golf presets`` (the table README shows: preset, record, parameters, published val_bpb, vocab) and ``golf presets
NAME`` (a preset's description and every setting it changes from the defaults)."""

from __future__ import annotations

import inspect

from tabulate import tabulate

from golflib.config import Config
from golflib.model.gpt import count_params
from golflib.model.registry import meta_model
from golflib.presets import PRESETS, RECORDS, resolve


def param_count(cfg: Config) -> int:
    """Exact parameter count of ``cfg``'s model, built on the ``meta`` device (no memory)."""
    return count_params(meta_model(cfg.model))


def presets_table() -> list[dict]:
    """One row per preset: ``{"preset", "record", "params", "published_bpb", "vocab"}``."""
    rows = []
    for name in sorted(PRESETS):
        cfg = resolve(name, environ={})
        record, bpb = RECORDS.get(name, ("", None))
        rows.append({"preset": name, "record": record, "params": param_count(cfg), "published_bpb": bpb,
                     "vocab": cfg.model.vocab_size})
    return rows


def format_presets(rows: list[dict]) -> str:
    """:func:`presets_table` as a text table (tabulate; parameters with thousands separators, bpb to 4 places)."""
    body = [[r["preset"], r["record"], f"{r['params']:,}", "—" if r["published_bpb"] is None else
             f"{r['published_bpb']:.4f}", r["vocab"]] for r in rows]
    return tabulate(body, headers=["preset", "record", "params", "published val_bpb", "vocab"],
                    colalign=("left", "left", "right", "right", "right"), disable_numparse=True)


def preset_details(name: str) -> str:
    """The preset's docstring, its record and every config field it sets that differs from the defaults. Raises
    :class:`~golflib.settings.base.ConfigError` for an unknown preset (from :func:`golflib.presets.resolve`)."""
    cfg = resolve(name, environ={})
    base, mine = Config().flat(), cfg.flat()
    changed = [[k, base[k], mine[k]] for k in mine if mine[k] != base[k]]
    record, bpb = RECORDS.get(name, ("", None))
    head = [f"{name}: {record}" + ("" if bpb is None else f", published val_bpb {bpb:.4f}"),
            f"parameters: {param_count(cfg):,}", "", inspect.getdoc(PRESETS[name]) or "", ""]
    return "\n".join(head) + tabulate(changed, headers=["field", "default", name], disable_numparse=True)

