"""Reading ``result.json``: every golflib reader goes through :func:`load_run_result`, which validates the file
against the JSON Schema (:func:`golflib.runresult.validate`) and returns a
:class:`golflib.runresult.RunResult`. A version-1 file (the layout golflib wrote before issue 13) is converted by
:func:`convert_v1`; any other version is refused with a message naming the version expected.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

from golflib.errors import parse_json
from golflib.eval.bpb import EvalResult
from golflib.runresult import (SCHEMA_NAME, SCHEMA_VERSION, ArtifactRecord, RunResult, RunResultError, Timings,
                               validate)

def parse_run_result(d: Any, source: str = "result.json") -> RunResult:
    """Parse and validate a result object (version 2, or version 1 converted by :func:`convert_v1`). Raises
    :class:`golflib.runresult.RunResultError` naming ``source`` and the field, or the version expected."""
    if not isinstance(d, dict):
        raise RunResultError(f"{source}: expected a JSON object, got {type(d).__name__}")
    version = d.get("version", 1 if "schema" not in d else None)
    if version == 1:
        d = convert_v1(d, source)
    elif version != SCHEMA_VERSION or d.get("schema") != SCHEMA_NAME:
        raise RunResultError(f"{source}: schema {d.get('schema')!r} version {version!r}; this golflib reads "
                             f"{SCHEMA_NAME} version {SCHEMA_VERSION} (and converts version 1)")
    validate(d, source)
    arts = {k: ArtifactRecord(**a) for k, a in d["artifacts"].items()}
    scores, refs = {}, {}
    for key, e in d["scores"].items():
        e = dict(e)
        if "reference" in e:
            refs[key] = e.pop("reference")
        scores[key] = EvalResult(**e)
    return RunResult(run_dir=d["run_dir"], config=d["config"], training=d["training"],
                     timings=Timings(**d["timings"]), val=d["val"], code_bytes=d["code"]["bytes"],
                     code_source=d["code"]["source"], scored_artifact=d["scored_artifact"], artifacts=arts,
                     scores=scores, references=refs, extras=d.get("extras", {}), size_limit=d["size_limit"])


def load_run_result(run_dir: str | os.PathLike) -> RunResult:
    """Read ``<run_dir>/result.json`` (or the ``.json`` file itself). Raises ``FileNotFoundError`` when the run
    did not finish and :class:`golflib.runresult.RunResultError` for a file that does not follow the schema."""
    path = Path(run_dir)
    path = path if path.suffix == ".json" else path / "result.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (the run did not finish, or this is not a run directory)")
    d = parse_json(path.read_bytes(), str(path), RunResultError)
    return parse_run_result(d, str(path))


def save_extras(run_dir: str | os.PathLike, **extras: Any) -> RunResult:
    """Add ``extras`` (e.g. the unigram ``reference`` a notebook computes) to a run's ``result.json``, rewritten
    in version 2 after validation (:meth:`golflib.runresult.RunResult.save`); returns the updated result."""
    rr = load_run_result(run_dir)
    rr.extras.update(extras)
    rr.save(run_dir)
    return rr


def _eval_entry(e: Any) -> tuple[dict, dict | None] | None:
    if not isinstance(e, dict) or "val_bpb" not in e:
        return None
    e = dict(e)
    ref = None
    mode = e.pop("reference_mode", None)
    delta = e.pop("delta_bpb_vs_sliding", e.pop("delta_bpb_vs_reference", None))
    if mode is not None and delta is not None:
        ref = {"mode": mode, "delta_bpb": delta}
    return e, ref


def convert_v1(d: dict, source: str = "result.json") -> dict:
    """The version-2 object of a version-1 ``result.json`` (the layout golflib wrote before issue 13). Raises
    :class:`RunResultError` naming ``source`` when a section the conversion needs is missing."""
    try:
        code = int(d.get("code_bytes", 0))
        scores: dict = {}

        def put(key, e):
            got = _eval_entry(e)
            if got is not None:
                entry, ref = got
                if ref is not None:
                    entry["reference"] = ref
                scores[key] = entry

        put("pre_quant", d.get("pre_quant"))
        put("pre_quant_live", d.get("pre_quant_live"))
        q = d.get("quantized") or {}
        put("quantized/standard", q.get("standard"))
        put("quantized/sliding", q.get("sliding"))
        m = d.get("mixed_artifact")
        for name in ("standard", "sliding"):
            put(f"mixed/{name}", (m or {}).get(name))
        for group in ("ttt", "ngram"):
            for k, e in (d.get(group) or {}).items():
                if k != "seconds":
                    put(f"{group}/{k}", e)
        arts = {}
        if d.get("artifact"):
            arts["int8"] = dataclasses.asdict(ArtifactRecord.build(d["artifact"], code))
        extras = {k: d[k] for k in ("reference", "demo") if k in d}
        if m:
            arts["mixed"] = dataclasses.asdict(ArtifactRecord.build(
                {k: v for k, v in m.items() if k not in ("standard", "sliding", "calibration")}, code))
            if "calibration" in m:
                extras["calibration"] = m["calibration"]
        train_ms = float(d["train_time_ms"])
        return {"schema": SCHEMA_NAME, "version": SCHEMA_VERSION, "run_dir": d.get("run_dir", ""),
                "config": d.get("config", {}),
                "training": {"steps": int(d["steps"]), "tokens_trained": int(d["tokens_trained"]),
                             "tokens_per_second": float(d["tokens_per_second"]),
                             "model_params": int(d.get("model_params", 0)),
                             "export_weights": d.get("export_weights", "live"),
                             "virtual_layers": list(d.get("virtual_layers", []))},
                "timings": {"train_time_ms": train_ms, "step_avg_ms": float(d["step_avg_ms"]),
                            "eval_seconds": float(d.get("eval_seconds", 0.0)),
                            "eval_wallclock_seconds": float(d.get("eval_wallclock_seconds", math.nan)),
                            "total_seconds": float(d.get("total_seconds", math.nan))},
                "val": {"val_tokens": int(d.get("val_tokens", 0)), "val_max_tokens": int(d.get("val_max_tokens", 0))},
                "code": {"bytes": code, "source": d.get("code_bytes_source", "")},
                "size_limit": int(d.get("size_limit", 16_000_000)),
                "scored_artifact": d.get("scored_artifact", "int8"), "artifacts": arts, "scores": scores,
                "extras": extras}
    except (KeyError, TypeError, ValueError) as e:
        raise RunResultError(f"{source}: a version-1 result.json without {e} cannot be converted") from None
