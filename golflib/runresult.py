"""``result.json``: the typed, versioned outcome of one training run (:class:`RunResult`).

Layout (version 2; the JSON Schema is ``golflib/schemas/run_result.v2.json``)::

    {"schema": "golflib.run_result", "version": 2, "run_dir": ..., "config": {group: {field: value}},
     "training": {"steps", "tokens_trained", "tokens_per_second", "model_params", "export_weights",
                  "virtual_layers"},
     "timings": {"train_time_ms", "step_avg_ms", "eval_seconds", "eval_wallclock_seconds", "total_seconds"},
     "val": {"val_tokens", "val_max_tokens"}, "code": {"bytes", "source"}, "size_limit": 16000000,
     "scored_artifact": "int8" | "mixed",
     "artifacts": {"int8" | "mixed": {"path", "scheme", "codec", "artifact_bytes", "payload_bytes",
                                      "bytes_total", "under_limit", "details"}},
     "scores": {score_key: EvalResult fields + optional "reference": {"mode", "delta_bpb"}},
     "extras": {...}}

Score keys are the records' (SPEC §5.4): ``pre_quant`` / ``pre_quant_live`` (the exported / live weights before
quantization), ``quantized/standard`` · ``quantized/sliding`` (the int8 artifact), ``mixed/standard`` ·
``mixed/sliding`` (the ``MIXED_EXPORT`` artifact), ``ttt/<kind>`` and ``ngram/<protocol>`` (on the scored artifact).
The training core writes it (:meth:`RunResult.save`); golflib reads it only through
:func:`golflib.workbook.resultfile.load_run_result`, which validates it against the schema and converts version 1
(the irregular layout before issue 13).
"""

from __future__ import annotations

import dataclasses
import json
import re
import os
from dataclasses import dataclass, field
from pathlib import Path

from golflib.codesize import BUNDLED
from golflib.errors import GolfError
from golflib.eval.bpb import EvalResult
from golflib.quant.prune import SIZE_LIMIT  # 16,000,000 bytes, decimal

SCHEMA_NAME = "golflib.run_result"
SCHEMA_VERSION = 2
ARTIFACT_KINDS = ("int8", "mixed")
ARTIFACT_FIELDS = ("path", "scheme", "codec", "artifact_bytes", "payload_bytes")  # what an export reports
SCORE_KEYS = ("pre_quant", "pre_quant_live", "quantized/standard", "quantized/sliding", "mixed/standard",
              "mixed/sliding", "ttt/chunked", "ttt/lora", "ttt/phased", "ngram/sliding", "ngram/chunked",
              "ngram/lora", "ngram/phased")
CUSTOM_PREFIX = "custom/"  # scores of protocols registered by plugins (golflib.plugins.register_protocol)


class RunResultError(GolfError):
    """A ``result.json`` that does not follow the schema (the message names the file and the field)."""


@dataclass
class ArtifactRecord:
    """One exported artifact: ``path`` (file name inside the run directory), ``scheme`` / ``codec`` (SPEC §3.B),
    ``artifact_bytes`` (file size, bytes), ``payload_bytes`` (compressed weights, bytes), ``bytes_total``
    (artifact + counted code, bytes), ``under_limit`` (``bytes_total < 16,000,000``) and ``details`` (scheme
    extras: byte classes, header bytes, GPTQ/LQER reports)."""

    path: str
    scheme: str
    codec: str
    artifact_bytes: int
    payload_bytes: int
    bytes_total: int
    under_limit: bool
    details: dict = field(default_factory=dict)

    @classmethod
    def build(cls, info: dict, code_bytes: int, size_limit: int = SIZE_LIMIT) -> ArtifactRecord:
        """From an export's report ``info`` (``path``, ``scheme``, ``codec``, ``artifact_bytes``,
        ``payload_bytes``; any other key but ``bytes_total`` / ``under_limit`` goes to ``details``) and the counted
        ``code_bytes``: ``bytes_total`` and ``under_limit`` (strictly below ``size_limit``) are derived here."""
        total = int(info["artifact_bytes"]) + int(code_bytes)
        derived = ("bytes_total", "under_limit")
        return cls(path=info["path"], scheme=info["scheme"], codec=info["codec"],
                   artifact_bytes=int(info["artifact_bytes"]), payload_bytes=int(info["payload_bytes"]),
                   bytes_total=total, under_limit=total < size_limit,
                   details={k: v for k, v in info.items() if k not in ARTIFACT_FIELDS + derived})


@dataclass
class Timings:
    """Wall-clock of the run: ``train_time_ms`` (the timed loop, ms), ``step_avg_ms``, ``eval_seconds`` (sum of
    the scoring passes, s), ``eval_wallclock_seconds`` (everything after the loop: export, round trips, scoring;
    SPEC §4.8), ``total_seconds``."""

    train_time_ms: float
    step_avg_ms: float
    eval_seconds: float
    eval_wallclock_seconds: float
    total_seconds: float


@dataclass
class RunResult:
    """A run's outcome (module docstring). ``scores`` maps score keys to :class:`EvalResult`; ``references``
    maps a score key to ``{"mode", "delta_bpb"}`` (the same protocol without TTT / the mixer) where one was scored;
    ``training`` holds ``steps``, ``tokens_trained``, ``tokens_per_second``, ``model_params``, ``export_weights``,
    ``virtual_layers``; ``val`` holds ``val_tokens`` / ``val_max_tokens``; ``extras`` anything a notebook adds
    (``reference`` unigram scores, the ``demo`` summary, GPTQ ``calibration``)."""

    run_dir: str
    config: dict
    training: dict
    timings: Timings
    val: dict
    code_bytes: int
    code_source: str
    scored_artifact: str
    artifacts: dict[str, ArtifactRecord]
    scores: dict[str, EvalResult]
    references: dict[str, dict] = field(default_factory=dict)
    extras: dict = field(default_factory=dict)
    size_limit: int = SIZE_LIMIT

    # ---- reading ---------------------------------------------------------------------------------------------
    def score(self, key: str) -> EvalResult:
        """The :class:`EvalResult` of score ``key``; raises ``KeyError`` naming the keys this run has."""
        if key not in self.scores:
            raise KeyError(f"score {key!r} is not in this run's result.json (run dir {self.run_dir}); it has "
                           f"{', '.join(self.scores) or 'none'}")
        return self.scores[key]

    def has(self, key: str) -> bool:
        return key in self.scores

    def artifact_of(self, key: str) -> ArtifactRecord:
        """The artifact score ``key`` was computed on: ``quantized/*`` the int8 one, ``mixed/*`` the mixed one,
        ``ttt/*`` / ``ngram/*`` the scored artifact. Raises ``KeyError`` when the run has no such artifact."""
        group = key.partition("/")[0]
        kind = {"quantized": "int8", "mixed": "mixed"}.get(group, self.scored_artifact)
        if kind not in self.artifacts:
            raise KeyError(f"score {key!r}: the run has no {kind} artifact (run dir {self.run_dir})")
        return self.artifacts[kind]

    @property
    def scored(self) -> ArtifactRecord:
        """The artifact a submission ships (the one sliding, TTT and n-gram scored)."""
        return self.artifacts[self.scored_artifact]

    def bytes_total(self, kind: str | None = None) -> int:
        """Artifact + counted code bytes of artifact ``kind`` (int8 | mixed; default the scored one)."""
        return self.artifacts[kind or self.scored_artifact].bytes_total

    # ---- (de)serialization -------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The version-2 JSON object (module docstring)."""
        scores = {}
        for key, res in self.scores.items():
            entry = res.to_dict()
            if key in self.references:
                entry["reference"] = dict(self.references[key])
            scores[key] = entry
        return {"schema": SCHEMA_NAME, "version": SCHEMA_VERSION, "run_dir": self.run_dir, "config": self.config,
                "training": self.training, "timings": dataclasses.asdict(self.timings), "val": self.val,
                "code": {"bytes": self.code_bytes, "source": self.code_source}, "size_limit": self.size_limit,
                "scored_artifact": self.scored_artifact,
                "artifacts": {k: dataclasses.asdict(a) for k, a in self.artifacts.items()},
                "scores": scores, "extras": self.extras}

    def save(self, path: str | os.PathLike) -> Path:
        """Validate and write the JSON (``path``: a run directory or a ``.json`` file; overwrites, as a notebook
        adding ``extras`` does). From the package the object is checked against the JSON Schema; a bundled
        ``train_gpt.py`` carries no schema file, so there only the byte sums and the scored artifact are checked
        here and the schema when golflib reads the file (:func:`golflib.workbook.resultfile.load_run_result`).
        Raises :class:`RunResultError` if the object does not follow the schema (nothing is written then)."""
        path = Path(path)
        path = path if path.suffix == ".json" else path / "result.json"
        d = self.to_dict()
        if BUNDLED:
            check_consistency(d, str(path))
        else:
            validate(d, str(path))
        path.write_text(json.dumps(d, indent=2, default=jsonable) + "\n", encoding="utf-8")
        return path


def jsonable(o):
    if isinstance(o, (set, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


# ---- validation --------------------------------------------------------------------------------------------------
SCHEMA_FILE = Path(__file__).resolve().parent / "schemas" / f"run_result.v{SCHEMA_VERSION}.json"
_SCHEMA_CACHE: dict = {}


def schema() -> dict:
    """The JSON Schema of version :data:`golflib.runresult.SCHEMA_VERSION`."""
    if "s" not in _SCHEMA_CACHE:
        _SCHEMA_CACHE["s"] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return _SCHEMA_CACHE["s"]


def validate(d: dict, source: str = "result.json") -> None:
    """Validate a version-2 object against the JSON Schema with ``jsonschema``, then
    :func:`check_consistency`. Raises :class:`RunResultError` naming ``source`` and the JSON path of the first
    problem."""
    import jsonschema

    scores = d.get("scores") if isinstance(d, dict) else None
    for key in scores if isinstance(scores, dict) else ():
        if key not in SCORE_KEYS and not re.fullmatch(r"custom/[a-z0-9_][a-z0-9_.-]*", str(key)):
            raise RunResultError(f"{source}: scores: {key!r} is not one of {', '.join(SCORE_KEYS)} or "
                                 f"custom/<name> (a plugin's protocol)")
    try:
        jsonschema.validate(_plain(d), schema())
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise RunResultError(f"{source}: {where}: {e.message}") from None
    check_consistency(d, source)


def _plain(o):
    """JSON-shaped copy (tuples as lists), so the schema sees what the file will hold."""
    return json.loads(json.dumps(o, default=jsonable))


def check_consistency(d: dict, source: str = "result.json") -> None:
    """What a schema cannot say: every artifact's ``bytes_total = artifact_bytes + code bytes``, and
    ``scored_artifact`` names an artifact present. Raises :class:`RunResultError` naming ``source``."""
    code = d["code"]["bytes"]
    for kind, a in d["artifacts"].items():
        if a["bytes_total"] != a["artifact_bytes"] + code:
            raise RunResultError(f"{source}: artifacts/{kind}/bytes_total={a['bytes_total']} is not artifact_bytes "
                                 f"{a['artifact_bytes']} + code bytes {code}")
    if d["artifacts"] and d["scored_artifact"] not in d["artifacts"]:
        raise RunResultError(f"{source}: scored_artifact={d['scored_artifact']!r} but artifacts has "
                             f"{', '.join(d['artifacts'])}")
