"""``golf audit RUN_DIR``: re-check a run's stored legality reports and, with ``--perturb``, prove legality by
experiment — re-run the run's own scoring code on its val stream and on copies whose future is replaced (SPEC §4.8
items 2-5; issue 15). Prints one verdict per scored entry and writes ``audit-<time>.json`` into the run directory
(never overwriting anything).

Stored-report checks per protocol (every ``result.json`` entry with a ``ledger``): the report is internally
consistent; no C1-C4 violation; every target scored exactly once; the scored target count and byte total equal
those recomputed from the val shards and the tokenizer's byte tables — or, for a CaseOps dataset, its byte
sidecar, itself checked document by document against the UTF-8 bytes of the decoded original text (the accounting
checks); the logged val_bpb follows from its own val_loss, tokens and bytes; the evaluation order is stream order,
or a declared order for the document-sorted kinds accepted in #1610/#1626 (verdict ``PASS (declared order)``).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from golflib.errors import parse_json
from golflib.settings.base import ConfigError
from golflib.config import Config
from golflib.data.bytecount import is_sidecar, load_byte_counter, sidecar_path_note, sidecar_text_audit
from golflib.data.caseops import original_text_decoder
from golflib.data.loader import load_validation_tokens
from golflib.data.luts import load_sentencepiece
from golflib.eval.dump import load_dump
from golflib.eval.protocols import CUSTOM, PROTOCOLS, eval_window
from golflib.runlog import write_json
from golflib.runresult import RunResult
from golflib.workbook.perturb import compare, doc_ids, order_check, plan
from golflib.workbook.replay import NOT_REPLAYED, ReplaySpec, dump_name, protocol_name, replay_in_process
from golflib.workbook.runs import load_result



def protocol_entries(result: RunResult) -> dict[str, dict]:
    """``{"quantized/standard": entry, "mixed/sliding": entry, "ttt/chunked": entry, ...}``: every scored entry of a
    run (its :class:`golflib.runresult.RunResult` score keys, ``pre_quant`` / ``pre_quant_live`` included), as
    EvalResult dicts."""
    return {k: e.to_dict() for k, e in result.scores.items()}


def recheck(entry: dict, n_targets: int, n_bytes: int, unit: str | None = None) -> list[tuple[str, bool, str]]:
    """The stored-report checks of the module docstring, as ``(check, ok, detail)`` rows. ``unit``: the protocol's
    registered unit (:class:`golflib.eval.protocols.Protocol`, :func:`_unit_of`), known for golflib's protocols and,
    for a plugin's, from the replay (None: unknown); a declared (non-stream) order passes only for unit
    ``document``."""
    rep = entry.get("ledger")
    if not isinstance(rep, dict):
        return [("ledger report present", False, "no ledger report stored (run predates the ledger?)")]
    counts = rep.get("violation_counts", {})
    viol = rep.get("violations", [])
    rows = [("ledger report present", True, f"{rep.get('n_score_calls')} score / {rep.get('n_updates')} update calls"),
            ("report consistent", bool(rep["legal"]) == (not viol and not rep.get("declared"))
             and (sum(counts.values()) == 0) == (not viol),
             f"legal={rep['legal']} violations={len(viol)} counts={counts} declared={len(rep.get('declared') or [])}")]
    for c, name in ((1, "C1 causal"), (2, "C2 normalized"), (3, "C3 score before update"), (4, "C4 single pass")):
        n = counts.get(f"C{c}", 0)
        first = next((v for v in viol if v["condition"] == c), None)
        rows.append((name, n == 0, "ok" if n == 0 else f"{n} position(s), first {first}"))
    rows.append(("every target scored once", rep["n_scored"] == rep["n_targets"] == n_targets,
                 f"scored {rep['n_scored']} of {rep['n_targets']} (val stream: {n_targets})"))
    rows.append(("accounting (tokens, bytes)", entry["tokens"] == n_targets and entry["bytes"] == n_bytes,
                 f"tokens {entry['tokens']} vs {n_targets}, bytes {entry['bytes']} vs {n_bytes}"))
    bpb = entry["val_loss"] * entry["tokens"] / (math.log(2) * entry["bytes"])
    rows.append(("val_bpb from its sums", abs(bpb - entry["val_bpb"]) <= 1e-9 * max(1.0, bpb),
                 f"{entry['val_bpb']:.8f} vs {bpb:.8f}"))
    declared = not rep.get("stream_order", True)
    rows.append(("evaluation order", not declared or unit == "document",
                 "stream" if not declared else f"declared ({entry.get('details', {}).get('order', '?')}), unit "
                 f"{unit or 'unknown: run --perturb'}"))
    return rows




# ---- the perturbation audit ------------------------------------------------------------------------------------
def slice_config(cfg: Config, n_targets: int, n_docs: int) -> Config:
    """The run's TTT settings scaled to a short slice: at least 4 chunks, phases over half of its documents."""
    t = cfg.ttt
    return cfg.replace({"TTT_CHUNK_TOKENS": max(1, min(t.ttt_chunk_tokens, n_targets // 4)),
                        "GLOBAL_TTT_CHUNK_TOKENS": max(1, min(t.global_ttt_chunk_tokens, n_targets // 4)),
                        "PHASED_TTT_PREFIX_DOCS": max(1, min(t.phased_ttt_prefix_docs, n_docs // 2)),
                        "TTT_BATCH_SIZE": max(1, min(t.ttt_batch_size, max(1, n_docs // 4)))})


def _unit_of(key: str, replayed: dict) -> str | None:
    """The unit of score ``key``'s protocol: the replay's (a plugin's is known only there), else golflib's registry
    (None for a plugin's protocol that was not replayed, and for the pre-export entries)."""
    e = replayed.get(key) or {}
    if "unit" in e:
        return e["unit"]
    name = protocol_name(key)
    return PROTOCOLS[name].unit if name in PROTOCOLS and not name.startswith(CUSTOM) else None


def _bitwise(a: dict, b: dict) -> tuple[bool, str]:
    """Two dumps of the same protocol on the same stream: identical NLLs, counts, write order and rows?"""
    for k in ("nll", "rows"):
        if a[k].shape != b[k].shape or not np.array_equal(a[k].view(np.int32), b[k].view(np.int32)):
            if a[k].shape != b[k].shape:
                return False, f"{k} shapes differ between two scorings of the same stream"
            diff = np.abs(np.nan_to_num(a[k].astype(np.float64), nan=0) - np.nan_to_num(b[k].astype(np.float64), nan=0))
            return False, f"{k} differ between two scorings of the same stream (max |diff| {diff.max():.3g})"
    for k in ("count", "rank"):
        if not np.array_equal(a[k], b[k]):
            return False, f"{k} differ between two scorings of the same stream"
    return True, "two scorings of the same stream are bitwise identical"


def _dump_checks(key: str, e: dict, unit: str) -> list[tuple[str, bool, str]]:
    """Checks of one replayed entry's own dump and ledger: C4 from the counts, C2 tied rows, resets."""
    d, rep = e["dump"], e.get("ledger") or {}
    declared = {k: sum(x["positions"] for x in rep.get("declared", []) if x.get("kind") == k)
                for k in ("repeat", "unscored")}
    rows = [("C4 in the dump: each target once",
             d["repeated"] <= declared["repeat"] and d["n_targets"] - d["scored"] <= declared["unscored"],
             f"{d['repeated']} position(s) scored more than once (max {d['max_count']} times; declared "
             f"{declared['repeat']}), {d['n_targets'] - d['scored']} never scored (declared {declared['unscored']})")]
    c2_ok = d["untied_rows"] == 0 and d["unnormalized_rows"] == 0 and d["rows_missing"] == 0 and d["rows_written"] > 0
    rows.append(("C2 on the rows scored", c2_ok,
                 f"{d['rows_written']} sampled rows tied to their NLLs (max |-log p[y] - nll| "
                 f"{d['max_tie_error']:.2e}, max |sum - 1| {d['max_sum_error']:.2e}); {d['untied_rows']} untied "
                 f"(first {d['first_untied']}), {d['unnormalized_rows']} not normalized, {d['rows_missing']} sampled "
                 f"positions scored without their rows"))
    resets = int(rep.get("n_resets") or 0)
    rows.append(("resets", resets == 0 or unit == "document",
                 f"{resets} ledger reset(s)" + ("" if resets == 0 or unit == "document" else
                                               " in a stream-unit protocol: only per-document state may be reset")))
    return rows


def perturbation_audit(run_dir: Path, result: RunResult, cfg: Config, meta: dict, *, slice_tokens: int = 0,
                       cuts: int = 2,
                       seed: int = 0, agg_tol: float | None = None, timeout: float | None = None, threads: int = 0,
                       echo: Callable[[str], None] = print) -> dict:
    """The black-box audit of issue 15 on a finished run (module docstring, :mod:`golflib.workbook.perturb`):

    1. **reproduction**: the run's scoring path replayed (:func:`golflib.workbook.replay.replay`, a fresh process) on
       the whole val stream; each entry's val_bpb must be within ``agg_tol`` (bits/byte) of ``result.json`` and its
       tokens and bytes equal; its dump must score each target once (C4, declared deviations excepted) with every
       sampled row normalized and tied to its NLL (C2); a stream-unit protocol may not reset its ledger;
    2. **determinism**: the stream (or its first ``slice_tokens`` targets) scored twice in two processes, bitwise equal;
    3. **causality**: each perturbation of :func:`golflib.workbook.perturb.plan` scored in its own process and
       compared (:func:`golflib.workbook.perturb.compare`) in the protocol's unit; the write order identical on every
       stream and in the unit's order (:func:`golflib.workbook.perturb.order_check`).

    With ``slice_tokens`` the TTT settings are scaled to the slice (:func:`slice_config`). Returns ``{key: {"ok",
    "checks": [(check, ok, detail)], "perturbations": [...]}}`` plus ``"_meta"`` (streams, seconds). ``threads``:
    torch threads of each replay (0: the run's, from ``meta`` — ``config.json``'s — so float sums split the same
    way).
    ``agg_tol`` (bits/byte; None: 1e-6 for a CPU run, 5e-3 for a run scored on a GPU — bf16 there, fp32 here;
    not measured on a GPU yet)."""
    t0 = time.perf_counter()
    mc, tc = cfg.model, cfg.train
    device = meta.get("device") or {}
    threads = threads or int(device.get("torch_threads") or 0)  # the run's intra-op threads: the same float sums
    if agg_tol is None:  # replays run on this CPU in fp32; a CUDA run scored in bf16 (SPEC §2.6) lands nearby
        agg_tol = 1e-6 if device.get("device", "cpu") == "cpu" else 5e-3
        if agg_tol > 1e-6:
            echo(f"[audit] the run scored on {device.get('device')}, the replay runs on this CPU in fp32: result.json "
                 f"is reproduced within {agg_tol:g} bits/byte (--agg-tol); the perturbation comparisons stay bitwise "
                 f"(every stream replayed here)")
    keys = tuple(k for k in result.scores if k not in NOT_REPLAYED)
    full = load_validation_tokens(cfg.data.val_glob, 1, mc.vocab_size, tc.val_max_tokens).numpy()
    n_full = full.size - 1
    sliced = 0 < slice_tokens < n_full
    stream = full[:slice_tokens + 1] if sliced else full
    n = stream.size - 1
    overrides = {}
    if sliced:
        scfg = slice_config(cfg, n, int(doc_ids(stream, mc.bos_id).max()) + 1)
        overrides = {"TTT_CHUNK_TOKENS": scfg.ttt.ttt_chunk_tokens,
                     "GLOBAL_TTT_CHUNK_TOKENS": scfg.ttt.global_ttt_chunk_tokens,
                     "PHASED_TTT_PREFIX_DOCS": scfg.ttt.phased_ttt_prefix_docs,
                     "TTT_BATCH_SIZE": scfg.ttt.ttt_batch_size}
        first_chunk = scfg.ttt.ttt_chunk_tokens
    else:
        first_chunk = cfg.ttt.ttt_chunk_tokens
    first_chunk = min(first_chunk, eval_window(cfg) * 4) if not cfg.ttt.ttt_enabled else first_chunk
    perturbations = plan(stream, vocab_size=mc.vocab_size, bos_id=mc.bos_id, cuts=cuts, seed=seed,
                         first_chunk=first_chunk)
    rng = np.random.default_rng(seed + 1)
    sample = np.unique(np.concatenate([[p.cut for p in perturbations], [max(p.cut - 1, 0) for p in perturbations],
                                       rng.integers(0, n, size=min(32, n))])).astype(np.int64)
    docs = doc_ids(stream, mc.bos_id)
    tmp = Path(tempfile.mkdtemp(prefix="golf-audit-"))

    def run(tag: str, tokens: np.ndarray, ov: dict) -> tuple[Path, dict]:
        out = tmp / tag
        t = time.perf_counter()
        spec = ReplaySpec(str(run_dir), keys, tokens, sample[sample < tokens.size - 1], str(out), ov, threads)
        rep = replay_in_process(spec, timeout=timeout)
        echo(f"[audit] replay {tag}: {len(tokens) - 1} targets, {len(keys)} entries, {time.perf_counter() - t:.1f}s")
        return out, rep["entries"]

    echo(f"[audit] replaying {', '.join(keys)} in fresh processes: the whole val stream ({n_full} targets), "
         f"{'a slice of ' + str(n) + ' targets' if sliced else 'the stream again'} and {len(perturbations)} "
         f"perturbed copies")
    full_dir, full_entries = run("full", full, {})
    if sliced:
        orig_dir, orig_entries = run("original", stream, overrides)
    else:
        orig_dir, orig_entries = full_dir, full_entries
    again_dir, again_entries = run("again", stream, overrides)
    pert = [(p, *run(f"perturbed-{i}", p.tokens, overrides)) for i, p in enumerate(perturbations)]
    out: dict = {}
    for key in keys:
        stored = result.scores[key]
        checks: list[tuple[str, bool, str]] = []
        e = full_entries.get(key, {})
        unit = _unit_of(key, full_entries) or "stream"
        if "error" in e:  # a strict ledger that raised during the replay names its condition
            name = {2: "C2 on the rows scored", 4: "C4 in the dump: each target once"}.get(
                e.get("condition"), f"C{e['condition']} in the replay" if e.get("condition") else "replay")
            out[key] = {"ok": False, "unit": unit, "checks": [(name, False, e["error"])], "perturbations": []}
            continue
        dv = abs(e["val_bpb"] - stored.val_bpb)
        checks.append(("reproduces result.json", dv <= agg_tol and e["tokens"] == stored.tokens
                       and e["bytes"] == stored.bytes,
                       f"replayed val_bpb {e['val_bpb']:.8f} vs stored {stored.val_bpb:.8f} (|diff| {dv:.2e}, "
                       f"tolerance {agg_tol:g}); tokens {e['tokens']} vs {stored.tokens}, bytes {e['bytes']} vs "
                       f"{stored.bytes}"))
        checks += _dump_checks(key, e, unit)
        a_ok = "error" not in orig_entries.get(key, {}) and "error" not in again_entries.get(key, {})
        if not a_ok:
            checks.append(("deterministic", False, (orig_entries.get(key, {}).get("error")
                                                    or again_entries.get(key, {}).get("error"))))
            out[key] = {"ok": False, "unit": unit, "checks": checks, "perturbations": []}
            continue
        d0 = load_dump(orig_dir / dump_name(key))
        same, detail = _bitwise(d0, load_dump(again_dir / dump_name(key)))
        checks.append(("deterministic", same, detail))
        checks.append(("order", *order_check(d0, unit, docs)))
        results, order_same = [], True
        for p, pdir, pentries in pert:
            pe = pentries.get(key, {})
            if "error" in pe:
                results.append({"perturbation": p.name, "cut": p.cut, "ok": False, "error": pe["error"]})
                continue
            dp = load_dump(pdir / dump_name(key))
            if not np.array_equal(d0["rank"], dp["rank"]):
                order_same = False
            results.append(compare(d0, dp, p, unit))
        checks.append(("order independent of contents", order_same,
                       "the same write order on every stream" if order_same else
                       "the write order changed when the future was replaced: the order reads tokens"))
        ran = [r for r in results if r["ok"] is not None]
        bad = [r for r in ran if not r["ok"]]
        first = bad[0] if bad else None
        checks.append(("future perturbation", bool(ran) and not bad,
                       f"{len(ran)} perturbation(s) in unit {unit}, "
                       f"{sum(r.get('n_compared', 0) for r in ran)} NLLs and "
                       f"{sum(r.get('rows_compared', 0) for r in ran)} rows compared bitwise"
                       + (f"; moved: {first['perturbation']} (first changed NLL at {first.get('first_diff')}, row at "
                          f"{first.get('first_row_diff')}, max |diff| {first.get('max_abs_diff', 0):.3g}"
                          f"{', ' + first['error'] if 'error' in first else ''})" if first else "")))
        out[key] = {"ok": all(ok for _, ok, _ in checks), "unit": unit, "checks": checks, "perturbations": results}
    out["_meta"] = {"val_targets": int(n_full), "perturbed_targets": int(n), "sliced": sliced, "overrides": overrides,
                    "perturbations": [{"name": p.name, "kind": p.kind, "cut": p.cut, "end": p.end}
                                      for p in perturbations],
                    "replays": 3 + len(perturbations) - (0 if sliced else 1), "agg_tol": agg_tol,
                    "seconds": time.perf_counter() - t0}
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def code_check(meta: dict) -> list[tuple[str, bool, str]]:
    """The training core that scored the run (``config.json`` meta ``core_sha256``) is the one the replay runs."""
    import hashlib

    from golflib.codesize import core_source

    then = meta.get("core_sha256")
    if then is None or meta.get("bundled"):
        why = "run from a bundled train_gpt.py" if meta.get("bundled") else "not recorded (a run before issue 15)"
        return [("golflib code unchanged", True, f"{why}: replayed with this checkout's golflib")]
    now = hashlib.sha256(core_source().encode("utf-8")).hexdigest()
    return [("golflib code unchanged", now == then,
             "the training core that scored the run, byte for byte" if now == then else
             f"the training core changed since the run (SHA-256 {then[:12]}… then, {now[:12]}… now; git commit "
             f"{meta.get('git_commit')}): check out the run's golflib to audit the code that produced the score")]


def plugin_check(meta: dict, cfg: Config) -> list[tuple[str, bool, str]]:
    """The plugins the run loaded (``meta``: ``config.json``'s) are the files that would be loaded now, byte for
    byte; :func:`code_check` first."""
    rows = code_check(meta)
    if not cfg.eval.eval_plugins:
        return rows
    from golflib.plugins import PluginError, plugin_digests

    then = {d["spec"]: d["sha256"] for d in meta.get("plugins") or []}
    try:
        now = {d["spec"]: d["sha256"] for d in plugin_digests(cfg.eval.eval_plugins)}
    except PluginError as e:
        return rows + [("plugins unchanged", False, str(e))]
    changed = [s for s in cfg.eval.eval_plugins if then.get(s) != now.get(s)]
    return rows + [("plugins unchanged", not changed,
             "the run's plugins, byte for byte" if not changed else
             f"{', '.join(changed)} changed since the run (SHA-256 differs or was not recorded): the audit would "
             f"not run the code that produced the score")]


def audit_run(run_dir: str | os.PathLike, *, perturb: bool = False, slice_tokens: int = 0, cuts: int = 2,
              seed: int = 0, agg_tol: float | None = None, timeout: float | None = None, threads: int = 0,
              echo: Callable[[str], None] = print) -> dict:
    """Audit a finished run (see the module docstring): the stored-report checks of every entry and, with
    ``perturb``, :func:`perturbation_audit` (its verdict joins each entry's). Returns ``{"protocols": {key:
    {"mode", "val_bpb", "verdict", "checks", "perturbation"}}, "perturbation_meta", "written_to"}``; a verdict is
    ``PASS``, ``PASS (declared order)`` (unit ``document``) or ``FAIL``. Raises ``FileNotFoundError`` for a run
    without ``result.json``."""
    run_dir = Path(run_dir)
    result = load_result(run_dir)
    cfg = Config.from_json_file(run_dir / "config.json")
    meta = parse_json((run_dir / "config.json").read_bytes(), str(run_dir / "config.json"), ConfigError).get("meta", {})
    mc, tc = cfg.model, cfg.train
    luts = load_byte_counter(cfg.data, mc.vocab_size, mc.bos_id)
    streams = {}
    plugins = plugin_check(meta, cfg)
    side_row = None
    if is_sidecar(luts):  # CaseOps: the sidecar itself is checked against the decoded original text
        sp = load_sentencepiece(cfg.data.tokenizer_path)
        whole = load_validation_tokens(cfg.data.val_glob, 1, mc.vocab_size, tc.val_max_tokens)
        a = sidecar_text_audit(whole, luts, sp, original_text_decoder(sp), mc.bos_id,
                               last_complete=not tc.val_max_tokens)
        side_row = ("byte sidecar = decoded original text", a["ok"],
                    f"sidecar {a['sidecar_bytes']} vs decoded {a['decoded_bytes']} bytes over {a['docs']} documents, "
                    f"{a['mismatched_docs']} mismatched" + (f" (first {a['first_mismatch']})" if not a["ok"] else ""))
        echo(f"[audit] {sidecar_path_note(luts)}; {side_row[2]}")
    perturbation: dict = {}
    code_ok = all(ok for _, ok, _ in plugins)
    if perturb and code_ok:
        perturbation = perturbation_audit(run_dir, result, cfg, meta, slice_tokens=slice_tokens, cuts=cuts, seed=seed,
                                          agg_tol=agg_tol, timeout=timeout, threads=threads, echo=echo)
    out: dict = {"run_dir": str(run_dir), "protocols": {}}
    for name, entry in protocol_entries(result).items():
        L = tc.train_seq_len if entry["mode"] in ("standard", "standard_doc") else eval_window(cfg)
        if L not in streams:
            v = load_validation_tokens(cfg.data.val_glob, L, mc.vocab_size, tc.val_max_tokens)
            streams[L] = (v.numel() - 1, luts.stream_bytes(v))
        p = perturbation.get(name)
        unit = p["unit"] if p else _unit_of(name, {})
        rows = recheck(entry, *streams[L], unit=unit) + ([side_row] if side_row else [])
        if name not in NOT_REPLAYED:
            rows += plugins
        if perturb and p is None and name not in NOT_REPLAYED:
            rows.append(("perturbation audit", False,
                         "not run: " + next((d for _, ok, d in plugins if not ok), "no replay")))
        if p is not None:
            rows += [tuple(c) for c in p["checks"]]
        ok = all(ok for _, ok, _ in rows)
        declared = (unit == "document") or (unit is None and not (entry.get("ledger") or {}).get("stream_order", True))
        v = "FAIL" if not ok else ("PASS (declared order)" if declared else "PASS")
        out["protocols"][name] = {"mode": entry["mode"], "val_bpb": entry["val_bpb"], "verdict": v,
                                  "checks": [{"check": c, "ok": ok, "detail": d} for c, ok, d in rows],
                                  "perturbation": p}
        failed = [f"{c} ({d})" if len(d) < 240 else c for c, ok, d in rows if not ok]
        note = "" if not failed else " failed: " + "; ".join(failed)
        echo(f"{name:20s} {entry['mode']:18s} val_bpb {entry['val_bpb']:.6f}  {v}{note}")
    if perturbation:
        out["perturbation_meta"] = perturbation["_meta"]
        echo(f"[audit] perturbation audit: {perturbation['_meta']['replays']} replays, "
             f"{perturbation['_meta']['seconds']:.1f}s")
    path = run_dir / f"audit-{time.strftime('%Y%m%d-%H%M%S')}.json"
    i = 2
    while path.exists():
        path = run_dir / f"audit-{time.strftime('%Y%m%d-%H%M%S')}-{i}.json"
        i += 1
    write_json(path, out)
    out["written_to"] = str(path)
    return out
