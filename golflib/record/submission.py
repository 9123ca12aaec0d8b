"""``submission.json``, ``requirements.txt`` and the README of a record folder (SPEC §5.2, §5.3).

``submission.json`` always has the minimal keys (``author, github_id, name, blurb, date, val_loss, val_bpb,
bytes_total, bytes_code``) plus ``track, seeds, seed_results, val_bpb_std, hardware, pytorch_version, compliance,
base_pr``, with ``val_bpb``/``val_loss`` the mean over *all* seeds run and ``bytes_total`` the max over seeds.
"""

from __future__ import annotations

import importlib.metadata as md
import sys
from typing import Sequence

from golflib.config import Config
from golflib.record.bundle import bundle_imports
from golflib.record.stats import Significance

# configuration fields that describe where data lives or which run this is, not the method
_NOT_METHOD = {"SEED", "RUN_ID", "DATA_PATH", "TOKENIZER_PATH", "TRAIN_FILES", "VAL_FILES"}


def hardware_string(meta: dict) -> str:
    """``"8x NVIDIA H100 80GB HBM3"`` / ``"1x cpu (2 cores)"`` from a run's ``config.json`` meta."""
    d = meta.get("device", {})
    n = d.get("world_size", 1)
    if d.get("gpu"):
        return f"{n}x {d['gpu']}" + (f" (CUDA {d['cuda']})" if d.get("cuda") else "")
    return f"{n}x {d.get('device', 'cpu')} ({d.get('cpu_count', '?')} cores)"


RECORDS_TORCH = "2.9.1+cu128"  # the CUDA stack of the accepted records (`make setup-gpu`, the `gpu` extra)
FA3_NOTE = ("# FlashAttention 3 is not on PyPI; install the wheel built for this torch/CUDA:\n"
            "# pip install --no-deps flash_attn_3 --find-links "
            "https://windreamer.github.io/flash-attention3-wheels/cu128_torch291/\n")


def requirements(script_source: str, run_torch: str | None = None) -> str:
    """``requirements.txt`` for the third-party modules the script imports, pinned to the installed versions.
    ``torch`` is pinned to the CUDA build the seeds ran with (``run_torch``, e.g. ``"2.9.1+cu128"``) or, for seeds
    run on CPU, to the records' stack :data:`RECORDS_TORCH` with a comment saying so — the file says what to install
    on the 8xH100 machine, as accepted records' do. Imports with no installed distribution (optional GPU kernels the
    script falls back from) are listed as a comment, and the FlashAttention 3 wheel as accepted records list it."""
    dists = md.packages_distributions()
    lines, optional, note = [], [], ""
    for mod in bundle_imports(script_source):
        if mod in sys.stdlib_module_names or mod == "__future__":
            continue
        if mod not in dists:
            optional.append(mod)
            continue
        for dist in sorted(set(dists[mod])):
            if dist == "torch":
                cuda = run_torch if run_torch and "+cu" in run_torch else RECORDS_TORCH
                if cuda != run_torch:
                    note = (f"# the seeds of this folder ran torch {run_torch or 'unknown'} (see the logs); "
                            f"torch is pinned to the records' CUDA stack\n")
                lines.append(f"torch=={cuda}")
            else:
                lines.append(f"{dist}=={md.version(dist).split('+')[0]}")
    text = ("# pip install -r requirements.txt (torch's +cu128 wheels: --extra-index-url "
            "https://download.pytorch.org/whl/cu128)\n" + note
            + "\n".join(sorted(set(lines), key=str.lower)) + "\n\n" + FA3_NOTE)
    optional = [m for m in optional if m not in ("flash_attn_interface", "flash_attn")]
    if optional:
        text += f"# optional, not installed where this record was made (used when present): {', '.join(optional)}\n"
    return text


def config_changes(cfg: Config, base: Config) -> list[tuple[str, object, object]]:
    """``(ENV_NAME, base value, this value)`` for every method field that differs (data paths and seed excluded)."""
    a, b = base.flat(), cfg.flat()
    return [(k, a[k], b[k]) for k in b if k not in _NOT_METHOD and a[k] != b[k]]


def _r8(v) -> float | None:
    """A score with the records' 8 decimals (their ``*_exact`` lines and ``submission.json``)."""
    return None if v is None else round(float(v), 8)


def submission_json(*, name: str, author: str, github_id: str, blurb: str, date: str, track: str,
                    rows: Sequence[dict], summary: dict, code_bytes: int, hardware: str, pytorch_version: str,
                    compliance: dict, base_pr: int | None, score_key: str, script_stats: dict,
                    significance: Significance | None, technique_summary: str = "",
                    cuda_version: str | None = None) -> dict:
    """The ``submission.json`` object (module docstring): the accepted records' keys, scores with their 8 decimals
    (``val_bpb``, ``val_loss``), times in seconds and bytes as integers; ``cuda_version`` only for a CUDA run."""
    out = {
        "author": author, "github_id": github_id, "name": name, "blurb": blurb, "date": date,
        "val_loss": _r8(summary["val_loss"]), "val_bpb": _r8(summary["val_bpb"]), "bytes_total": summary["bytes_total"],
        "bytes_code": code_bytes,
        "track": track,
        "seeds": [r["seed"] for r in rows],
        "seed_results": {str(r["seed"]): {"val_bpb": _r8(r["val_bpb"]), "val_loss": _r8(r["val_loss"]),
                                          "bytes_total": r["bytes_total"], "artifact_bytes": r["artifact_bytes"],
                                          "steps": r["steps"], "step_avg_ms": round(r["step_avg_ms"], 2),
                                          "train_time_s": round(r["train_time_s"], 3),
                                          "eval_time_s": round(r["eval_time_s"], 1),
                                          "pre_quant_bpb": _r8(r["pre_quant_bpb"])} for r in rows},
        "val_bpb_std": _r8(summary["val_bpb_std"]), "val_loss_std": _r8(summary["val_loss_std"]),
        "artifact_bytes_mean": round(sum(r["artifact_bytes"] for r in rows) / len(rows)),
        "artifact_bytes_max": summary["artifact_bytes_max"], "train_steps_mean": round(summary["train_steps_mean"], 2),
        "step_avg_ms_mean": round(summary["step_avg_ms_mean"], 2),
        "train_time_s_mean": round(sum(r["train_time_s"] for r in rows) / len(rows), 3),
        "eval_time_s_mean": round(sum(r["eval_time_s"] for r in rows) / len(rows), 1),
        "hardware": hardware, "pytorch_version": pytorch_version,
        **({"cuda_version": cuda_version} if cuda_version else {}),
        "compliance": compliance,
        "base_pr": base_pr,
        "val_bpb_method": f"{score_key} (eval_mode:{rows[0]['eval_mode']})",
        "code_form": {k: script_stats[k] for k in ("form", "codec", "raw_bytes", "raw_lines", "minified_bytes",
                                                   "compressed_bytes", "stub_bytes", "counted_bytes")},
        "seed_results_all_runs_disclosure": f"all {len(rows)} seeds run are reported; none dropped or replaced",
    }
    if technique_summary:
        out["technique_summary"] = technique_summary
    if significance is not None:
        out.update({"t_statistic": significance.t, "p_value": significance.p, "welch_df": significance.df,
                    "significance_test": significance.test,
                    "delta_vs_base_nats": -significance.improvement_nats,
                    "delta_vs_base_bpb": (-significance.improvement_bpb
                                          if significance.improvement_bpb is not None else None)})
    return out


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v) or "()"
    return str(v)


def readme(*, name: str, blurb: str, track: str, rows: Sequence[dict], summary: dict, table_md: str,
           score_key: str, hardware: str, pytorch_version: str, script_stats: dict, code_bytes: int,
           significance: Significance | None, significance_note: str, base_pr: int | None, base_label: str,
           changes: Sequence[tuple[str, object, object]], commands: Sequence[str], data_note: str,
           requirements_txt: str, compliance_rows: Sequence[dict], figures: Sequence[str], files: Sequence[str],
           provenance: str) -> str:
    """The README.md text of a record folder (SPEC §5.3 pattern)."""
    n = len(rows)
    L = [f"# {name}: val_bpb {summary['val_bpb']:.5f} (mean of {n} seed{'s' if n != 1 else ''})", ""]
    if blurb:
        L += [blurb, ""]
    L += [f"Track `{track}` · hardware {hardware} · PyTorch {pytorch_version} · score `{score_key}` "
          f"(eval_mode `{rows[0]['eval_mode']}`) · bytes_total max {summary['bytes_total']:,} "
          f"(limit 16,000,000 decimal)", "",
          "## Results (every seed run is listed; none dropped or replaced)", "", table_md,
          f"val_bpb = mean over all {n} seeds = **{summary['val_bpb']:.8f}** (std {summary['val_bpb_std']:.8f}); "
          f"val_loss = {summary['val_loss']:.8f} nats (std {summary['val_loss_std']:.8f}).", ""]
    L += ["## Versus the base record", ""]
    if significance is not None:
        s = significance
        bpb = (f" = {-s.improvement_bpb:+.5f} bpb (tokens/byte {s.tokens_per_byte:.4f})"
               if s.improvement_bpb is not None else "")
        L += [f"Base: {base_label}" + (f" (PR #{base_pr})" if base_pr else "") + ".", "",
              "| | nats (val_loss) | bpb |", "|---|---:|---:|",
              f"| base mean | {s.mean_base_nats:.5f} | |",
              f"| this mean | {s.mean_new_nats:.5f} | {summary['val_bpb']:.5f} |",
              f"| delta | {-s.improvement_nats:+.5f} | {'' if s.improvement_bpb is None else f'{-s.improvement_bpb:+.5f}'} |",
              f"| record bar | -{s.margin_nats} | {'' if s.margin_bpb is None else f'-{s.margin_bpb:.5f}'} |", "",
              f"Significance ({s.test}; H0: improvement <= {s.margin_nats} nats): t = {s.t:.3f}, "
              f"df = {s.df:.2f}, p = {s.p:.4g} -> **{'passes' if s.passes else 'does not pass'}** the record bar "
              f"(p < {s.alpha}). Delta {-s.improvement_nats:+.5f} nats{bpb}.", ""]
    else:
        L += [significance_note or "No base record was given: no significance test.", ""]
    L += [f"## Changes vs the base ({base_label})", ""]
    if changes:
        L += ["| field | base | this record |", "|---|---|---|"]
        L += [f"| `{k}` | {_fmt(a)} | {_fmt(b)} |" for k, a, b in changes] + [""]
    else:
        L += ["(no configuration field differs)", ""]
    L += ["## Run command", "", "```bash", "pip install -r requirements.txt", *commands, "```", "", data_note, "",
          "Environment variables named like the config fields (`NUM_LAYERS`, `TTT_ENABLED`, ...) override the "
          "configuration baked into `train_gpt.py` (`BAKED_CONFIG`).", ""]
    L += ["## Requirements", "", "```", requirements_txt.rstrip(), "```", ""]
    form = script_stats["form"]
    L += ["## Code size (which form is counted)", "",
          f"`train_gpt.py` is the **{form}** form and is what counts: {code_bytes:,} bytes."
          + (f" It is a self-extracting stub (minified source, {script_stats['codec']} + base85, SPEC §3.B13); "
             f"`train_gpt_readable.py` is the same program before minification, shipped for review only (not "
             f"run, not counted)." if form == "compressed" else " It is plain source."), "",
          "| form | bytes | lines |", "|---|---:|---:|",
          f"| readable (golflib training core, {script_stats['modules']} modules) | {script_stats['raw_bytes']:,} "
          f"| {script_stats['raw_lines']:,} |",
          f"| minified (AST: no docstrings/comments/annotations, dead defs dropped) | "
          f"{script_stats['minified_bytes']:,} | {script_stats['minified_lines']:,} |",
          f"| compressed stub ({script_stats['stub_codec']} {script_stats['compressed_bytes']:,} B + base85) | "
          f"{script_stats['stub_bytes']:,} | 2 |", "", provenance, ""]
    L += ["## Compliance", "", "| seed | check | ok | detail |", "|---|---|:---:|---|"]
    for c in compliance_rows:
        mark = ("yes" if c["ok"] else "**NO**") + ("" if c["required"] else " (info)")
        detail = str(c["detail"]).replace("|", "\\|")
        L.append(f"| {'all' if c['seed'] is None else c['seed']} | {c['name']} | {mark} | {detail} |")
    L += ["", "README FAQ rules (SPEC §4.1) and #1017 C1-C4: artifact = code + compressed model < 16,000,000 "
          "bytes for every seed; training stops itself at the wall-clock cap and train-data calibration is timed "
          "inside it; the evaluation wall-clock covers everything after the training loop; every scoring "
          "protocol recorded the positions it scored and learned from in a legality ledger (causal, normalized "
          "softmax, score before update, single pass) and every report above is clean; no network or "
          "training-data access during evaluation; no validation data during training.", ""]
    if figures:
        L += ["## Figures", ""] + [f"![{f}]({f})" for f in figures if not f.endswith(".svg")] + [""]  # SVG: same
    L += ["## Files", ""] + [f"- `{f}`" for f in files] + [""]
    return "\n".join(L)
