"""``golf audit RUN_DIR``: re-check a run's stored legality reports and, on request, run the future-perturbation test
on a slice of its val stream (SPEC §4.8 items 2, 4, 5). Prints one verdict per protocol and writes
``audit-<time>.json`` into the run directory (never overwriting anything).

Stored-report checks per protocol (every ``result.json`` entry with a ``ledger``): the report is internally
consistent; no C1-C4 violation; every target scored exactly once; the scored target count and byte total equal
those recomputed from the val shards and the tokenizer's byte tables — or, for a CaseOps dataset, its byte
sidecar, itself checked document by document against the UTF-8 bytes of the decoded original text (the accounting
checks); the logged val_bpb follows from its own val_loss, tokens and bytes; the evaluation order is stream order,
or a declared order for the document-sorted kinds accepted in #1610/#1626 (verdict ``PASS (declared order)``).
"""

from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from golflib.config import Config
from golflib.data.bytecount import is_sidecar, load_byte_counter, sidecar_path_note, sidecar_text_audit
from golflib.data.caseops import original_text_decoder
from golflib.data.loader import load_validation_tokens
from golflib.data.luts import load_sentencepiece
from golflib.eval.context import ScoringContext
from golflib.eval.ledger import perturbation_test
from golflib.eval.protocols import PROTOCOLS
from golflib.eval.protocols import eval_window
from golflib.eval.ttt_common import doc_segments
from golflib.quant.export import load_artifact_model
from golflib.runlog import write_json
from golflib.runresult import RunResult
from golflib.workbook.runs import find_artifact, load_result

DECLARED_ORDER_KINDS = ("ttt_lora", "ttt_phased")  # length-sorted document queues (#1530, #1610/#1626)


def protocol_entries(result: RunResult) -> dict[str, dict]:
    """``{"quantized/standard": entry, "mixed/sliding": entry, "ttt/chunked": entry, ...}``: every scored entry of a
    run (its :class:`golflib.runresult.RunResult` score keys, ``pre_quant`` / ``pre_quant_live`` included), as
    EvalResult dicts."""
    return {k: e.to_dict() for k, e in result.scores.items()}


def recheck(entry: dict, n_targets: int, n_bytes: int) -> list[tuple[str, bool, str]]:
    """The stored-report checks of the module docstring, as ``(check, ok, detail)`` rows."""
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
    rows.append(("evaluation order", not declared or entry["mode"].removesuffix("+ngram") in DECLARED_ORDER_KINDS,
                 "stream" if not declared else f"declared ({entry.get('details', {}).get('order', '?')})"))
    return rows


def perturb_key(mode: str) -> str:
    """Key of :func:`perturbation_suite` for an entry's ``mode`` (``ttt_chunked`` → ``ttt/chunked``,
    ``ttt_lora+ngram`` → ``ngram/lora``, ``sliding+ngram`` → ``ngram/sliding``)."""
    if mode.endswith("+ngram"):
        return "ngram/" + mode.removesuffix("+ngram").removeprefix("ttt_")
    return mode if mode in ("standard", "sliding") else "ttt/" + mode.removeprefix("ttt_")


def verdict(rows: list[tuple[str, bool, str]], declared: bool, perturb: dict | None = None) -> str:
    if not all(ok for _, ok, _ in rows):
        return "FAIL"
    if perturb is not None and not perturb["causal"] and not declared:
        return "FAIL"
    return "PASS (declared order)" if declared else "PASS"


def slice_config(cfg: Config, n_targets: int, n_docs: int) -> Config:
    """The run's TTT settings scaled to a short slice: at least 4 chunks, phases over half of its documents."""
    t = cfg.ttt
    return cfg.replace({"TTT_CHUNK_TOKENS": max(1, min(t.ttt_chunk_tokens, n_targets // 4)),
                        "GLOBAL_TTT_CHUNK_TOKENS": max(1, min(t.global_ttt_chunk_tokens, n_targets // 4)),
                        "PHASED_TTT_PREFIX_DOCS": max(1, min(t.phased_ttt_prefix_docs, n_docs // 2)),
                        "TTT_BATCH_SIZE": max(1, min(t.ttt_batch_size, max(1, n_docs // 4)))})


def perturbation_suite(model, cfg: Config, luts, tokens: torch.Tensor, kinds: tuple[str, ...], *, cuts: int = 2,
                       seed: int = 0, atol: float = 1e-4, bos_id: int | None = None,
                       ngram_protocols: tuple[str, ...] = ()) -> dict[str, dict]:
    """Run :func:`golflib.eval.ledger.perturbation_test` for the standard, sliding and each TTT protocol on
    ``tokens`` (int64 ``[n + 1]``, ``n`` a multiple of TRAIN_SEQ_LEN). TTT kinds return log-prob rows (which also
    catch an update one token past a chunk edge); standard and sliding return NLLs. Cuts: ``cuts`` seeded random
    positions in the second half plus, for chunked TTT, one target past the first chunk edge. Returns
    ``{protocol: {"causal", "max_abs_diff", "first_bad_position", "cuts": [...]}}``. ``ngram_protocols``: also
    each of these protocols with the n-gram mixer of ``cfg.ngram`` (``ngram/<protocol>``; rows for TTT kinds)."""
    n = tokens.numel() - 1
    bos_id = cfg.model.bos_id if bos_id is None else bos_id
    rng = np.random.default_rng(seed)
    base_cuts = sorted({int(c) for c in rng.integers(n // 2, n, size=cuts)})
    fns: dict[str, tuple[Callable, list[int]]] = {}

    def std(t):  # the run's own standard protocol (doc-isolated when it used that), golflib.eval.protocols
        out = torch.zeros(t.numel() - 1)
        PROTOCOLS["standard"].run(model, t, luts, cfg, ScoringContext(scores_out=out))
        return out

    def slide(t):
        out = torch.zeros(t.numel() - 1)
        PROTOCOLS["sliding"].run(model, t, luts, cfg, ScoringContext(scores_out=out))
        return out

    fns["standard"] = (std, base_cuts)
    fns["sliding"] = (slide, base_cuts)
    scfg = slice_config(cfg, n, len(doc_segments(tokens, bos_id)))
    for kind in kinds:
        def run(t, kind=kind):
            out = torch.zeros(t.numel() - 1, model.cfg.vocab_size)
            PROTOCOLS[f"ttt/{kind}"].run(copy.deepcopy(model), t, luts, scfg.replace({"BOS_ID": bos_id}),
                                         ScoringContext(scores_out=out))
            return out
        extra = [scfg.ttt.ttt_chunk_tokens + 1] if kind == "chunked" else []
        fns[f"ttt/{kind}"] = (run, sorted(set(base_cuts + extra)))
    for protocol in ngram_protocols:
        def run_ng(t, protocol=protocol):
            shape = (t.numel() - 1,) if protocol == "sliding" else (t.numel() - 1, model.cfg.vocab_size)
            out = torch.zeros(shape)
            PROTOCOLS[f"ngram/{protocol}"].run(copy.deepcopy(model), t, luts, scfg.replace({"BOS_ID": bos_id}),
                                               ScoringContext(scores_out=out))
            return out
        extra = [scfg.ttt.ttt_chunk_tokens + 1] if protocol == "chunked" else []
        fns[f"ngram/{protocol}"] = (run_ng, sorted(set(base_cuts + extra)))
    out = {}
    for name, (fn, cut_list) in fns.items():
        runs = [perturbation_test(fn, tokens, cut, seed=seed + i, atol=atol) for i, cut in enumerate(cut_list)]
        out[name] = {"causal": all(r["causal"] for r in runs), "max_abs_diff": max(r["max_abs_diff"] for r in runs),
                     "first_bad_position": next((r["first_bad_position"] for r in runs if not r["causal"]), None),
                     "cuts": cut_list, "mode": runs[0]["mode"]}
    return out


def audit_run(run_dir: str | os.PathLike, *, perturb: bool = False, slice_tokens: int = 4096, cuts: int = 2,
              seed: int = 0, kinds: tuple[str, ...] | None = None, atol: float = 1e-4,
              echo: Callable[[str], None] = print) -> dict:
    """Audit a finished run (see the module docstring). ``kinds``: TTT kinds for the perturbation test (default:
    the run's ``TTT_KINDS`` when TTT was enabled; kinds the run did not score are reported under
    ``perturb_only``, for information). ``atol`` (nats): the perturbation tolerance — fp32 batched kernels on CPU
    move a log-probability by ~1e-5 when the batch composition of the doc-batched kinds changes, while the
    stream-order protocols reproduce bitwise (max |diff| 0). Returns ``{"protocols": {name: {"verdict",
    "checks", "perturbation"}}, "written_to"}``. Raises ``FileNotFoundError`` for a run without
    ``result.json``."""
    run_dir = Path(run_dir)
    result = load_result(run_dir)
    cfg = Config.from_json_file(run_dir / "config.json")
    mc, tc = cfg.model, cfg.train
    luts = load_byte_counter(cfg.data, mc.vocab_size, mc.bos_id)
    streams = {}
    for L in {tc.train_seq_len, eval_window(cfg)}:
        v = load_validation_tokens(cfg.data.val_glob, L, mc.vocab_size, tc.val_max_tokens)
        streams[L] = (v.numel() - 1, luts.stream_bytes(v))
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
    entries = protocol_entries(result)
    perturbation: dict[str, dict] = {}
    if perturb:
        model = load_artifact_model(find_artifact(run_dir))
        full = load_validation_tokens(cfg.data.val_glob, tc.train_seq_len, mc.vocab_size, tc.val_max_tokens)
        n = max(tc.train_seq_len, (min(slice_tokens, full.numel() - 1) // tc.train_seq_len) * tc.train_seq_len)
        if kinds is None:
            kinds = cfg.ttt.ttt_kinds if cfg.ttt.ttt_enabled else ()
        ngram_protocols = cfg.ngram.ngram_protocols if cfg.ngram.ngram_enabled else ()
        echo(f"[audit] perturbation test on the first {n} val targets, protocols: standard, sliding"
             + "".join(f", ttt/{k}" for k in kinds) + "".join(f", ngram/{k}" for k in ngram_protocols))
        perturbation = perturbation_suite(model, cfg, luts, full[:n + 1], tuple(kinds), cuts=cuts, seed=seed,
                                          atol=atol, ngram_protocols=tuple(ngram_protocols))
    out: dict = {"run_dir": str(run_dir), "protocols": {}}
    for name, entry in entries.items():
        L = tc.train_seq_len if entry["mode"] == "standard" else eval_window(cfg)
        rows = recheck(entry, *streams[L]) + ([side_row] if side_row else [])
        declared = not (entry.get("ledger") or {}).get("stream_order", True)
        p = perturbation.get(perturb_key(entry["mode"]))
        v = verdict(rows, declared, p)
        out["protocols"][name] = {"mode": entry["mode"], "val_bpb": entry["val_bpb"], "verdict": v,
                                  "checks": [{"check": c, "ok": ok, "detail": d} for c, ok, d in rows],
                                  "perturbation": p}
        failed = [c for c, ok, _ in rows if not ok]
        note = "" if not failed else " failed: " + "; ".join(failed)
        if p is not None:
            note += (f" perturbation: {'causal' if p['causal'] else 'NOT causal in stream order'} "
                     f"(cuts {p['cuts']}, max |diff| {p['max_abs_diff']:.2e})")
        echo(f"{name:20s} {entry['mode']:12s} val_bpb {entry['val_bpb']:.6f}  {v}{note}")
    scored_keys = {perturb_key(e["mode"]) for e in entries.values()}
    for name, p in perturbation.items():  # perturbed protocols the run did not score (--kinds): information only
        if name not in scored_keys:
            note = "causal in stream order" if p["causal"] else "NOT causal in stream order"
            out["perturb_only"] = {**out.get("perturb_only", {}), name: p}
            echo(f"{name:20s} {'(not in run)':12s} perturbation: {note} (cuts {p['cuts']}, "
                 f"max |diff| {p['max_abs_diff']:.2e})")
    path = run_dir / f"audit-{time.strftime('%Y%m%d-%H%M%S')}.json"
    i = 2
    while path.exists():
        path = run_dir / f"audit-{time.strftime('%Y%m%d-%H%M%S')}-{i}.json"
        i += 1
    write_json(path, out)
    out["written_to"] = str(path)
    return out
