"""Eval-only replay of a run's own scoring path, one fresh process per val stream (issue 15; SPEC §4.8 item 2).

:func:`replay` re-runs every scored entry of a run — the artifact the run wrote, loaded into the run's
``MODEL_CLASS``, with the run's plugins (``EVAL_PLUGINS``: its ``custom/`` protocols, its ``NGRAM_MIXER``), its
config and golflib's protocol registry (:mod:`golflib.eval.protocols`), exactly as :mod:`golflib.train` scored them
— on a token stream it is given: the val stream itself, or a copy whose future the perturbation audit
(:mod:`golflib.workbook.audit`) replaced. Each protocol writes a :class:`golflib.eval.dump.ScoreDump` (per-target
NLLs, the order they were scored in, tied log-prob rows at the sampled positions), saved as ``<key>.safetensors`` next to a
``replay.json`` with each entry's aggregate, ledger report and dump summary.

:func:`replay_in_process` runs it in a child process started for that one stream (``fork`` where the platform has
it, else ``spawn``): whatever a protocol keeps in module globals — a statistic fitted on the first stream it saw, a
cache of val — dies with the process, so no replay can see another stream. ``pre_quant`` / ``pre_quant_live`` (the
float weights before export, not a submission's score) are not replayed.
"""

from __future__ import annotations

import copy
import json
import multiprocessing as mp
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NOT_REPLAYED = ("pre_quant", "pre_quant_live")


def protocol_name(key: str) -> str:
    """The registered protocol behind a score key: ``quantized/standard`` → ``standard``, ``mixed/sliding`` →
    ``sliding``; ``ttt/*``, ``ngram/*``, ``custom/*`` are their own names."""
    group, _, rest = key.partition("/")
    return rest if group in ("quantized", "mixed") else key


def artifact_kind(key: str, scored_artifact: str) -> str:
    """The artifact a score key was computed on: ``quantized/*`` the int8 one, ``mixed/*`` the mixed one, every
    further protocol the scored one (``scored_artifact``)."""
    group = key.partition("/")[0]
    return {"quantized": "int8", "mixed": "mixed"}.get(group, scored_artifact)


def dump_name(key: str) -> str:
    return key.replace("/", "__") + ".safetensors"


@dataclass
class ReplaySpec:
    """What one replay needs (picklable: it crosses into the child). ``run_dir``: the run; ``keys``: score keys to
    replay; ``tokens``: the stream, int64 ``[N]`` (each protocol truncates it at its window length, as the run
    did); ``sample``: target positions whose log-prob rows are dumped; ``out_dir``: where the dumps and
    ``replay.json`` go; ``overrides``: config fields changed for this replay (``{ENV_NAME: value}``, e.g. TTT
    chunk sizes scaled to a short slice); ``threads``: torch intra-op threads in the child (0: leave)."""

    run_dir: str
    keys: tuple[str, ...]
    tokens: np.ndarray
    sample: np.ndarray
    out_dir: str
    overrides: dict = field(default_factory=dict)
    threads: int = 1


def replay(spec: ReplaySpec) -> dict:
    """Run the replay in this process (module docstring). Returns and writes ``replay.json``: ``{"entries": {key:
    {"protocol", "unit", "val_bpb", "val_loss", "tokens", "bytes", "ledger", "dump", "seconds"} | {"error"}},
    "n_tokens"}``. A protocol that raises is recorded with its error and the next one runs."""
    import torch

    from golflib.config import Config
    from golflib.data.bytecount import load_byte_counter
    from golflib.eval.context import ScoringContext
    from golflib.eval.dump import ScoreDump
    from golflib.eval.protocols import get_protocol
    from golflib.model.layers import CONTROL_PATTERNS
    from golflib.quant.export import load_artifact_model
    from golflib.quant.fake_quant import set_late_qat
    from golflib.runtime import cast_model_for_device
    from golflib.workbook.runs import load_result

    if spec.threads:
        torch.set_num_threads(spec.threads)
    run_dir, out_dir = Path(spec.run_dir), Path(spec.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = Config.from_json_file(run_dir / "config.json")
    if spec.overrides:
        cfg = cfg.replace(spec.overrides, source="perturbation audit (slice)")
    if cfg.eval.eval_plugins:
        from golflib.plugins import load_plugins

        load_plugins(cfg.eval.eval_plugins)
    result = load_result(run_dir)
    mc = cfg.model
    luts = load_byte_counter(cfg.data, mc.vocab_size, mc.bos_id)
    models: dict[str, torch.nn.Module] = {}

    def model_for(key: str):
        kind = artifact_kind(key, result.scored_artifact)
        if kind not in models:
            path = run_dir / result.artifacts[kind].path
            m = load_artifact_model(path, mc, "cpu")
            cast_model_for_device(m, torch.device("cpu"), CONTROL_PATTERNS)
            if kind == result.scored_artifact and result.extras.get("ttt_late_qat"):
                tc = cfg.train
                models[kind + "/qat"] = copy.deepcopy(m)
                set_late_qat(models[kind + "/qat"], tc.qat_bits, tc.qat_clip, modules=tc.late_qat_modules)
            models[kind] = m
        late = key.startswith(("ttt/", "ngram/", "custom/")) and (kind + "/qat") in models
        return models[kind + "/qat" if late else kind]

    entries: dict[str, dict] = {}
    full = torch.from_numpy(np.asarray(spec.tokens, dtype=np.int64))
    for key in spec.keys:
        try:
            proto = get_protocol(protocol_name(key))
            L = proto.seq_len(cfg)
            n = ((full.numel() - 1) // L) * L
            toks = full[:n + 1].clone()
            dump = ScoreDump(toks, mc.vocab_size, sample=spec.sample[spec.sample < n])
            model = model_for(key)
            # the run scored sliding and standard on the model itself, TTT / n-gram / custom on a fresh copy
            m = model if proto.name in ("standard", "sliding") else copy.deepcopy(model)
            res = proto.run(m, toks, luts, cfg, ScoringContext(dump=dump))
            dump.save(out_dir / dump_name(key), {"key": key, "n_targets": n})
            entries[key] = {"protocol": proto.name, "unit": proto.unit, "val_bpb": res.val_bpb,
                            "val_loss": res.val_loss, "tokens": res.tokens, "bytes": res.bytes,
                            "seconds": res.seconds, "ledger": res.ledger, "dump": dump.summary(), "n_targets": n}
        except Exception as e:  # recorded: the audit fails this entry and goes on
            entries[key] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:],
                            "condition": getattr(e, "condition", None)}  # a LegalityError's C1-C4
    out = {"entries": entries, "n_tokens": int(full.numel())}
    (out_dir / "replay.json").write_text(json.dumps(out, default=str))
    return out


def _child(spec: ReplaySpec) -> None:
    try:
        replay(spec)
    except BaseException:  # the parent reads replay.json; leave the reason there
        Path(spec.out_dir).mkdir(parents=True, exist_ok=True)
        (Path(spec.out_dir) / "replay.json").write_text(json.dumps({"fatal": traceback.format_exc()[-4000:]}))
        os._exit(1)
    os._exit(0)  # skip interpreter teardown (gloo/OpenMP state inherited from the parent)


def replay_in_process(spec: ReplaySpec, timeout: float | None = None, start_method: str | None = None) -> dict:
    """:func:`replay` in a fresh child process (``fork`` where available, else ``spawn``; ``start_method``
    overrides) and its ``replay.json``. Raises ``RuntimeError`` with the child's traceback when it dies, or when it
    runs past ``timeout`` seconds (then it is killed)."""
    method = start_method or ("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    proc = mp.get_context(method).Process(target=_child, args=(spec,), daemon=False)
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join()
        raise RuntimeError(f"replay of {spec.run_dir} ran past {timeout} s and was killed")
    path = Path(spec.out_dir) / "replay.json"
    if not path.is_file():
        raise RuntimeError(f"replay of {spec.run_dir} died (exit code {proc.exitcode}) before writing {path}")
    out = json.loads(path.read_text())
    if "fatal" in out:
        raise RuntimeError(f"replay of {spec.run_dir} failed:\n{out['fatal']}")
    return out
