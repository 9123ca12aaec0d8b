"""result.json as a typed, versioned RunResult: the schema is enforced on write and on read, version 1 (the layout
golflib wrote before issue 13) is converted, other versions are refused by name."""

import copy
import json
import math

import pytest

from conftest import REPO
from golflib.eval.bpb import EvalResult
from golflib.runresult import (SCHEMA_FILE, SCORE_KEYS, ArtifactRecord, RunResult, RunResultError, Timings, schema,
                               validate)
from golflib.workbook.resultfile import convert_v1, load_run_result, parse_run_result, save_extras

# written by golflib d9f8242 (before issue 13): cpu-tiny, 10 steps, chunked TTT, n-gram on sliding and chunked
V1 = REPO / "tests" / "fixtures" / "result_v1.json"


def _score(mode, bpb, tokens=100, n_bytes=240):
    return EvalResult(mode=mode, val_loss=bpb * math.log(2) * n_bytes / tokens, val_bpb=bpb, tokens=tokens,
                      bytes=n_bytes, seconds=0.5, ledger={"legal": True}, details={"k": 1})


def _result(code=1000) -> RunResult:
    art = ArtifactRecord(path="final_model.int8_zlib.golf", scheme="int8_clean_per_row_v1", codec="zlib",
                         artifact_bytes=5000, payload_bytes=4900, bytes_total=5000 + code, under_limit=True)
    return RunResult(run_dir="runs/x", config={"train": {"seed": 1}}, training={
        "steps": 3, "tokens_trained": 3072, "tokens_per_second": 10.0, "model_params": 7, "export_weights": "live",
        "virtual_layers": [0, 1]}, timings=Timings(1.0, 0.3, 0.1, 0.2, 3.0), val={"val_tokens": 100,
                                                                                 "val_max_tokens": 0},
        code_bytes=code, code_source="test", scored_artifact="int8", artifacts={"int8": art},
        scores={"quantized/standard": _score("standard", 2.0), "ttt/chunked": _score("ttt_chunked", 1.9)},
        references={"ttt/chunked": {"mode": "sliding", "delta_bpb": -0.1}})


def test_round_trip_through_the_file_is_exact(tmp_path):
    r = _result()
    path = r.save(tmp_path)
    back = load_run_result(tmp_path)
    assert back == r and path.name == "result.json"
    d = json.loads(path.read_text())
    assert (d["schema"], d["version"]) == ("golflib.run_result", 2)
    assert d["scores"]["ttt/chunked"]["reference"] == {"mode": "sliding", "delta_bpb": -0.1}
    assert back.artifact_of("ttt/chunked") == back.artifact_of("quantized/standard") == back.scored
    assert back.bytes_total() == 6000 and back.score("ttt/chunked").val_bpb == 1.9
    with pytest.raises(KeyError, match="'mixed/sliding' is not in this run's result.json .* quantized/standard"):
        back.score("mixed/sliding")
    with pytest.raises(KeyError, match="no mixed artifact"):
        back.artifact_of("mixed/standard")


def test_save_refuses_what_the_schema_refuses_and_writes_nothing(tmp_path):
    bad = _result()
    bad.artifacts["int8"].bytes_total += 1
    with pytest.raises(RunResultError, match=r"artifacts/int8/bytes_total=6001 is not artifact_bytes 5000 \+ code"):
        bad.save(tmp_path)
    bad = _result()
    bad.scores["ttt/typo"] = bad.scores["ttt/chunked"]
    with pytest.raises(RunResultError, match="scores: 'ttt/typo' is not one of"):
        bad.save(tmp_path)
    bad = _result()
    bad.scored_artifact = "mixed"
    with pytest.raises(RunResultError, match="scored_artifact='mixed' but artifacts has int8"):
        bad.save(tmp_path)
    assert not (tmp_path / "result.json").exists()


def test_read_names_the_file_the_field_and_the_version(tmp_path):
    tmp_path = tmp_path / "invalid"  # deliberately bad files: the session's schema sweep (conftest) skips them
    tmp_path.mkdir()
    d = _result().to_dict()
    for mutate, msg in [(lambda x: x["scores"]["ttt/chunked"].pop("tokens"), r"scores/ttt/chunked: 'tokens' is a "
                                                                             r"required property"),
                        (lambda x: x["training"].update(steps="3"), r"training/steps: '3' is not of type 'integer'"),
                        (lambda x: x.update(version=3), r"schema 'golflib.run_result' version 3; this golflib reads "
                                                         r"golflib.run_result version 2 \(and converts version 1\)"),
                        (lambda x: x.update(extra_field=1), r"\(top level\): Additional properties are not allowed")]:
        e = copy.deepcopy(d)
        mutate(e)
        (tmp_path / "result.json").write_text(json.dumps(e))
        with pytest.raises(RunResultError, match=str(tmp_path / "result.json") + ": " + msg):
            load_run_result(tmp_path)
    (tmp_path / "result.json").write_text("{not json")
    with pytest.raises(RunResultError, match="not valid JSON"):
        load_run_result(tmp_path)
    with pytest.raises(FileNotFoundError, match="did not finish"):
        load_run_result(tmp_path / "nowhere")


def test_version_1_is_converted_section_by_section():
    raw = json.loads(V1.read_text())
    assert "version" not in raw and "quantized" in raw  # the old layout
    r = load_run_result(V1)
    assert sorted(r.scores) == sorted(["pre_quant", "pre_quant_live", "quantized/standard", "mixed/standard",
                                       "mixed/sliding", "ttt/chunked", "ngram/sliding", "ngram/chunked"])
    assert r.score("quantized/standard").val_bpb == raw["quantized"]["standard"]["val_bpb"]
    assert r.score("mixed/sliding").to_dict() == raw["mixed_artifact"]["sliding"]
    t = raw["ttt"]["chunked"]
    assert r.score("ttt/chunked").val_bpb == t["val_bpb"]
    assert r.references["ttt/chunked"] == {"mode": t["reference_mode"], "delta_bpb": t["delta_bpb_vs_sliding"]}
    assert r.references["ngram/chunked"]["mode"] == "ttt_chunked"
    assert r.artifacts["mixed"].artifact_bytes == raw["mixed_artifact"]["artifact_bytes"]
    assert r.artifacts["mixed"].details["classes"] == raw["mixed_artifact"]["classes"]
    assert r.extras["calibration"] == raw["mixed_artifact"]["calibration"]
    assert r.bytes_total("int8") == raw["bytes_total"] and r.scored_artifact == raw["scored_artifact"] == "mixed"
    assert r.timings.train_time_ms == raw["train_time_ms"] and r.training["steps"] == raw["steps"]
    validate(r.to_dict())  # the converted object is a valid version 2
    with pytest.raises(RunResultError, match="x.json: a version-1 result.json without 'steps' cannot be converted"):
        convert_v1({k: v for k, v in raw.items() if k != "steps"}, "x.json")


def test_extras_are_added_through_the_schema(tmp_path):
    _result().save(tmp_path)
    r = save_extras(tmp_path, reference={"unigram_val_bpb": 3.4})
    assert load_run_result(tmp_path).extras["reference"]["unigram_val_bpb"] == 3.4 == r.extras["reference"][
        "unigram_val_bpb"]


def test_the_schema_file_lists_the_score_keys_the_code_knows():
    s = schema()
    names = s["properties"]["scores"]["propertyNames"]["anyOf"]
    assert names[0]["enum"] == list(SCORE_KEYS) and names[1]["pattern"] == "^custom/[a-z0-9_][a-z0-9_.-]*$"
    custom = _result()
    custom.scores["custom/my_ttt"] = custom.scores["ttt/chunked"]  # a plugin's protocol (register_protocol)
    assert parse_run_result(custom.to_dict()).score("custom/my_ttt") == custom.scores["ttt/chunked"]
    assert SCHEMA_FILE.name == "run_result.v2.json" and parse_run_result(_result().to_dict()) == _result()
