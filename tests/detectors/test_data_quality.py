"""DataQuality (issue 18, data quality on the stream): each check, schema inference, the declared
schema and its messages, the saved folder, the decoder of values as sent, the detection event
and the metrics. No process is started: the worker end to end is test_data_quality_end_to_end."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from infertap.detectors.backends.data_quality import DataQuality
from infertap.detectors.backends.registry import create_backend, load_backend, require_no_pickles
from infertap.detectors.decode import Event
from infertap.detectors.evaluator import build_backend
from infertap.detectors.events import Origin, window_event
from infertap.detectors.fit import fit_detector
from infertap.detectors.framing import make_decoder
from infertap.detectors.metrics import DetectorMetrics
from infertap.detectors.quality.decode import QualityDecoder
from infertap.detectors.quality.schema import CHECKS
from infertap.detectors.settings import FeatureSettings, WorkerSettings
from infertap.serving.codec import encode_v2_request
from infertap.stack.specs import SpecError, load_file
from tests.detectors.records import request, response

pytestmark = pytest.mark.fast  # starts no process (make test-fast)

NAMES = ["x", "n", "colour", "flag", "note"]


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    """500 rows: a float, an integer, a categorical of three colours, a boolean, free text; 2% of x missing."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "x": rng.normal(10.0, 2.0, 500),
            "n": rng.integers(0, 20, 500),
            "colour": rng.choice(["red", "green", "blue"], 500),
            "flag": rng.random(500) < 0.5,
            "note": [f"note {i}" for i in range(500)],
        }
    )
    frame.loc[::50, "x"] = np.nan
    return frame


@pytest.fixture(scope="module")
def fitted(reference: pd.DataFrame) -> DataQuality:
    backend = create_backend("DataQuality", NAMES, {"chunk_size": 50})
    assert isinstance(backend, DataQuality)
    backend.fit(reference)
    return backend


def clean_window(reference: pd.DataFrame, rows: int = 50, seed: int = 5) -> np.ndarray:
    """Rows resampled from the reference (present values only), as the decoder gives them: objects."""
    present = reference.dropna().reset_index(drop=True)
    pick = np.random.default_rng(seed).choice(len(present), rows, replace=False)
    return np.array(
        [[v.item() if isinstance(v, np.generic) else v for v in row] for row in present.iloc[pick].values], dtype=object
    )


def violated(result) -> set[tuple[str, str]]:
    return {(v.feature, v.check) for v in result.violations}


# --- inference ------------------------------------------------------------------------------


def test_inferred_schema(fitted: DataQuality, reference: pd.DataFrame) -> None:
    schema = fitted.schema
    assert schema is not None
    kinds = {f.name: f.type for f in schema.features}
    assert kinds == {"x": "numeric", "n": "integer", "colour": "categorical", "flag": "boolean", "note": "string"}
    x = schema.feature("x")
    assert x is not None and x.missing_share == pytest.approx(10 / 500)
    assert (x.min, x.max) == (reference["x"].min(), reference["x"].max())
    colour = schema.feature("colour")
    assert colour is not None and colour.categories == ["blue", "green", "red"]
    assert schema.rows == 500 and schema.chunk_size == 50 and schema.duplicate_share == 0.0


def test_integer_column_with_gaps_is_integer_and_declared_fields_win(tmp_path: Path) -> None:
    frame = pd.DataFrame({"age": [20, None, 31, 45] * 10, "size": ["S", "M", "L", "M"] * 10})
    assert frame["age"].dtype == np.float64  # pandas reads integers with gaps as floats
    backend = create_backend(
        "DataQuality", ["age", "size"], {"schema": {"age": {"max": 120, "nullable": False}, "size": {"type": "string"}}}
    )
    backend.fit(frame)
    age, size = backend.schema.features
    assert age.type == "integer" and (age.min, age.max) == (20, 120) and age.nullable is False
    assert sorted(age.declared) == ["max", "nullable"]
    assert size.type == "string" and size.categories is None


def test_reference_duplicate_share_is_measured_in_window_sized_chunks() -> None:
    frame = pd.DataFrame({"a": [1, 1, 2, 3] * 50})  # every chunk of 4 holds one repeat
    backend = create_backend("DataQuality", ["a"], {"chunk_size": 4})
    backend.fit(frame)
    assert backend.schema.duplicate_share == pytest.approx(0.25)
    window = np.array([[1], [1], [2], [3]], dtype=object)  # the reference's share: no violation
    assert ("_all", "duplicate") not in violated(backend.predict(window))
    window = np.array([[1], [1], [1], [3]], dtype=object)
    assert ("_all", "duplicate") in violated(backend.predict(window))


def test_inference_reports_progress() -> None:
    said: list[str] = []
    backend = create_backend("DataQuality", ["a", "b"], {"chunk_size": 10})
    backend.on_progress = said.append
    backend.fit(pd.DataFrame({"a": range(100), "b": range(100)}))
    assert said[:2] == ["schema of 1/2 features", "schema of 2/2 features"]
    assert said[-1] == "duplicate rows in 10/10 chunks of 10"


# --- each check -----------------------------------------------------------------------------


def test_a_clean_window_reports_nothing(fitted: DataQuality, reference: pd.DataFrame) -> None:
    result = fitted.predict(clean_window(reference))
    assert result.kind == "dataquality" and result.n == 50
    assert result.violations == [] and result.is_alert is False
    assert [f.name for f in result.quality] == NAMES
    assert all(f.missing == f.type_violations == f.out_of_range == f.unseen == 0 for f in result.quality)


def test_missing_values_above_the_reference_share_plus_the_margin(fitted: DataQuality, reference) -> None:
    window = clean_window(reference)
    window[[0, 1], 0] = None  # 4%: under the reference's 2% + 5 points
    assert not violated(fitted.predict(window))
    window[[2, 3], 0] = [None, float("nan")]  # 8%: above
    result = fitted.predict(window)
    assert violated(result) == {("x", "missing")}
    (v,) = result.violations
    assert (v.count, v.share, v.threshold) == (4, 0.08, pytest.approx(0.07))
    assert [e.row for e in v.examples] == [0, 1, 2] and v.examples[0].value is None
    assert "4 of 50 rows miss x" in v.message
    assert result.quality[0].missing == 4


def test_nullable_false_makes_one_missing_value_a_violation(reference: pd.DataFrame) -> None:
    backend = create_backend("DataQuality", NAMES, {"schema": {"n": {"nullable": False}}})
    backend.fit(reference)
    window = clean_window(reference)
    window[7, 1] = None
    result = backend.predict(window)
    assert violated(result) == {("n", "missing")}
    assert result.violations[0].threshold == 0.0 and "nullable: false" in result.violations[0].message


@pytest.mark.parametrize(
    ("column", "bad", "expected"),
    [
        (0, "12.5", "type"),  # text in a numeric feature, even one that reads as a number
        (0, True, "type"),  # a boolean is not a number
        (1, 3.5, "type"),  # not a whole number
        (3, 1, "type"),  # not a boolean
        (4, 7, "type"),  # not text
        (2, ["red"], "type"),  # not a scalar
        (0, 1e6, "range"),
        (0, float("inf"), "range"),
        (1, 40, "range"),  # integers: [0, 19] widened by 10% of 19
        (2, "purple", "unseen"),
    ],
)
def test_one_bad_value_is_named_on_its_feature_and_check(fitted, reference, column, bad, expected) -> None:
    window = clean_window(reference)
    window[9, column] = bad
    result = fitted.predict(window)
    assert violated(result) == {(NAMES[column], expected)}
    (v,) = result.violations
    assert v.count == 1 and v.examples[0].row == 9
    assert v.examples[0].value == (str(bad) if bad == float("inf") else bad)


def test_range_tolerance_is_a_share_of_the_reference_range(reference: pd.DataFrame) -> None:
    backend = create_backend("DataQuality", NAMES, {"range_tolerance": 0.5})
    backend.fit(reference)
    hi, lo = reference["x"].max(), reference["x"].min()
    window = clean_window(reference)
    window[0, 0] = hi + 0.4 * (hi - lo)  # inside a tolerance of 50%
    assert not violated(backend.predict(window))
    window[0, 0] = hi + 0.6 * (hi - lo)
    assert violated(backend.predict(window)) == {("x", "range")}
    declared = create_backend("DataQuality", NAMES, {"schema": {"x": {"min": 0, "max": 10, "tolerance": 0}}})
    declared.fit(reference)
    window[0, 0] = 10.5
    assert ("x", "range") in violated(declared.predict(window))


def test_thresholds_per_check(reference: pd.DataFrame) -> None:
    backend = create_backend("DataQuality", NAMES, {"unseen_share": 0.05, "checks": ["unseen"]})
    backend.fit(reference)
    window = clean_window(reference)
    window[[0, 1], 2] = "purple"  # 4%: under the 5% allowed
    window[3, 0] = None  # other checks are off
    window[4, 0] = "text"
    assert not violated(backend.predict(window))
    window[2, 2] = "pink"
    assert violated(backend.predict(window)) == {("colour", "unseen")}


def test_constant_and_empty_features(fitted: DataQuality, reference: pd.DataFrame) -> None:
    window = clean_window(reference)
    window[:, 0] = 11.0  # a continuous feature holding one value: never by chance
    window[:, 1] = None  # rows stay unique: the notes differ
    result = fitted.predict(window)
    assert violated(result) == {("x", "constant"), ("n", "missing"), ("n", "empty")}
    assert result.quality[0].constant and result.quality[1].empty


def test_a_constant_window_likely_by_chance_is_no_violation() -> None:
    frame = pd.DataFrame({"flag": [True] * 95 + [False] * 5})
    backend = create_backend("DataQuality", ["flag"], {})
    backend.fit(frame)
    assert not violated(backend.predict(np.full((10, 1), True, dtype=object)))  # 0.95**9 = 63%
    assert violated(backend.predict(np.full((200, 1), True, dtype=object))) == {("flag", "constant")}


def test_duplicate_rows_within_the_window(fitted: DataQuality, reference: pd.DataFrame) -> None:
    window = clean_window(reference)
    window[10] = window[20]
    window[11] = window[20]
    window[12] = window[21]
    window[12, 0] = float("nan")
    window[13] = window[12]
    window[13, 0] = None  # NaN and null are one missing value
    result = fitted.predict(window)
    assert violated(result) == {("_all", "duplicate")}
    (v,) = result.violations
    assert v.count == 3 and [e.row for e in v.examples] == [11, 13, 20]  # each repeats an earlier row
    assert result.raw["duplicates"]["rows"] == 3


def test_numbers_only_windows_take_the_fast_path_with_the_same_verdicts() -> None:
    frame = pd.DataFrame(np.random.default_rng(0).normal(size=(300, 3)), columns=["a", "b", "c"])
    backend = create_backend("DataQuality", ["a", "b", "c"], {})
    backend.fit(frame)
    window = frame.values[:40].astype(object)
    window[3, 1] = None
    window[4, 1] = None
    window[5, 1] = None
    window[6, 2] = 50.0
    window[7] = window[9] = window[10] = window[8]
    fast = backend.predict(window)
    mixed = window.copy()
    mixed[0, 0] = np.float32(mixed[0, 0])  # one numpy scalar: every cell looked at one by one
    slow = backend.predict(mixed)
    assert violated(fast) == violated(slow) == {("b", "missing"), ("c", "range"), ("_all", "duplicate")}
    assert [v.count for v in fast.violations] == [v.count for v in slow.violations] == [3, 1, 3]


# --- declared schema, params, spec --------------------------------------------------------------


def spec_file(tmp_path: Path, detector: str, features: str = "[{name: a}, {name: colour, type: categorical}]") -> Path:
    path = tmp_path / "dq.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            apiVersion: infertap.dev/v1alpha1
            kind: Detector
            metadata: {{name: dq}}
            spec:
              source: {{inferenceService: iris}}
              features: {features}
              detector: {detector}
            """
        )
    )
    return path


@pytest.mark.parametrize(
    ("detector", "words"),
    [
        (
            "{name: DataQuality, params: {schema: {a: {type: numeric, min: 5, max: 1}}}, reference: r.csv}",
            "params.schema.a: min (5) is above max (1)",
        ),
        (
            "{name: DataQuality, params: {schema: {colour: {categories: []}}}, reference: r.csv}",
            "params.schema.colour.categories: List should have at least 1 item",
        ),
        (
            "{name: DataQuality, params: {schema: {a: {type: boolean, max: 3}}}, reference: r.csv}",
            "params.schema.a: min, max and tolerance apply to numeric and integer features, not boolean",
        ),
        ("{name: DataQuality, params: {missing_marign: 0.1}, reference: r.csv}", "params.missing_marign: Extra inputs"),
        ("{name: DataQuality, params: {checks: [nulls]}, reference: r.csv}", "params.checks.0: Input should be"),
        (
            "{name: DataQuality, params: {schema: {zz: {type: string}}}, reference: r.csv}",
            "params.schema names 'zz', which spec.features does not list (it lists a, colour)",
        ),
        (
            "{name: DataQuality, params: {schema: {a: {type: numeric}}}}",
            "leaves out colour (categorical without categories)",
        ),
        (
            "{name: DataQuality, reference: r.csv, missingValues: deadletter}",
            "missingValues: deadletter does not apply",
        ),
    ],
)
def test_bad_params_are_one_sentence_naming_the_field(tmp_path: Path, detector: str, words: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_file(spec_file(tmp_path, detector))
    assert words in str(caught.value)


def test_a_schema_declared_whole_runs_without_reference_data(tmp_path: Path) -> None:
    path = spec_file(
        tmp_path,
        "{name: DataQuality, params: {schema: {a: {type: integer, min: 0, max: 9, nullable: false}}}}",
        "[{name: a}, {name: colour, type: categorical, categories: [red, green]}]",
    )
    doc = load_file(path).documents[0]
    settings = doc.spec.to_settings(doc.source.parent)
    assert settings.reference is None and settings.saved_detector is None
    backend = build_backend(settings)
    window = np.array([[3, "red"], [None, "green"], [12, "blue"], [2.5, "red"], [3, "red"]], dtype=object)
    result = backend.predict(window)
    # no reference: how often rows repeat is unknown, so the repeated first row is no verdict
    assert violated(result) == {("a", "missing"), ("a", "range"), ("a", "type"), ("colour", "unseen")}
    assert result.raw["duplicates"]["rows"] == 1


def test_worker_settings_without_a_whole_schema_fail_when_built() -> None:
    settings = WorkerSettings(name="dq", inference_service="iris", detector="DataQuality", features=[{"name": "a"}])
    with pytest.raises(ValueError, match=r"leaves out a \(no type\)"):
        build_backend(settings)


# --- saved folder ---------------------------------------------------------------------------------


def test_fit_saves_json_that_loads_without_pickles(tmp_path: Path, reference: pd.DataFrame) -> None:
    reference.to_csv(tmp_path / "reference.csv", index=False)
    features = ", ".join(f"{{name: {n}}}" for n in NAMES)
    path = spec_file(tmp_path, "{name: DataQuality, reference: reference.csv}", f"[{features}]")
    doc = load_file(path).documents[0]
    stages: list[str] = []
    outcome = fit_detector(doc.spec, tmp_path, progress=lambda stage, done, total: stages.append(stage))
    assert outcome.rows == 500 and outcome.summary["colour"] == {
        "type": "categorical",
        "missing_share": 0.0,
        "categories": 3,
    }
    assert any("schema of 5/5 features" in s for s in stages)
    folder = outcome.path
    assert sorted(p.name for p in folder.iterdir()) == ["infertap-detector.json", "schema.json"]
    require_no_pickles(folder)
    body = json.loads((folder / "schema.json").read_text())
    assert [f["type"] for f in body["features"]] == ["numeric", "integer", "categorical", "boolean", "string"]
    loaded = load_backend(folder)
    window = clean_window(reference)
    window[0, 2] = "purple"
    assert violated(loaded.predict(window)) == {("colour", "unseen")}


# --- the decoder -------------------------------------------------------------------------------


def features(*names: str) -> list[FeatureSettings]:
    return [FeatureSettings(name=n) for n in names]


def events_of(*records) -> list[Event]:
    return [Event(r.headers["ce_id"].decode(), (r,), 0.0) for r in records]


def test_decoder_keeps_the_values_as_sent() -> None:
    decoder = QualityDecoder(features("a", "b", "c"))
    window = decoder.decode(
        events_of(
            request({"instances": [[1.5, None, "x"], [2, True, [1]]]}, 0),
            request({"instances": [{"a": 3.0, "c": "y"}]}, 1),  # lacks b: a missing value
            request({"inputs": {"a": [4.0], "b": ["t"], "c": [None]}}, 2),
            request({"instances": [[1.0, 2.0]]}, 3),  # wrong width: dead-lettered
            request(b"not json", 4),
        )
    )
    assert window.x.dtype == object and window.x.tolist() == [
        [1.5, None, "x"],
        [2, True, [1]],
        [3.0, None, "y"],
        [4.0, "t", None],
    ]
    assert window.row_event.tolist() == [0, 0, 1, 2]
    assert [r.reason for r in window.rejects] == ["wrong_feature_count", "not_json"]


def test_decoder_reads_v2_tensors_side_by_side() -> None:
    body, _ = encode_v2_request(
        {
            "length": np.array([1.5, 2.5], dtype=np.float32),
            "colour": np.array([b"red", b"blue"], dtype=object),
            "ok": np.array([True, False]),
        }
    )
    window = QualityDecoder(features("length", "colour", "ok")).decode(events_of(request(body, 0)))
    assert window.x.tolist() == [[1.5, b"red", True], [2.5, b"blue", False]]


def test_decoder_joins_inputs_and_outputs() -> None:
    decoder = QualityDecoder(
        [FeatureSettings(name="a"), FeatureSettings(name="label", source="output")], events="joined"
    )
    req = request({"instances": [[1.0], [None]]}, 0, eid="e1")
    res = response({"predictions": ["cat", "dog"]}, "e1", 1)
    window = decoder.decode([Event("e1", (req, res), 0.0)])
    assert window.x.tolist() == [[1.0, "cat"], [None, "dog"]]


def test_decoder_reads_outputs_alone() -> None:
    decoder = QualityDecoder([FeatureSettings(name="label", source="output")], events="joined")
    req = request({"instances": [[1.0, 2.0], [3.0, 4.0]]}, 0, eid="e1")
    res = response({"predictions": [0, 2]}, "e1", 1)
    assert decoder.decode([Event("e1", (req, res), 0.0)]).x.tolist() == [[0], [2]]


def test_the_worker_picks_the_quality_decoder() -> None:
    settings = WorkerSettings(
        name="dq", inference_service="iris", detector="DataQuality", features=[{"name": "a"}], reference="r.csv"
    )
    assert isinstance(make_decoder(settings), QualityDecoder)


# --- the detection event and the metrics --------------------------------------------------------------


def test_detection_event_names_violations_with_event_ids(fitted: DataQuality, reference: pd.DataFrame) -> None:
    rows = clean_window(reference, rows=20).tolist()
    rows[4][2] = "purple"
    records = [request({"instances": [r]}, i, eid=f"id-{i}") for i, r in enumerate(rows)]
    decoded = QualityDecoder(features(*NAMES)).decode(events_of(*records))
    result = fitted.predict(decoded.x)
    event = window_event(Origin("infertap://detector/dq", "iris", "dq"), decoded, result)
    assert event.get_type() == "io.infertap.dataquality" and event.get_subject() == "iris"
    body = orjson.loads(event.get_data())
    assert body["is_alert"] is True and body["n"] == 20
    assert body["violations"] == [
        {
            "feature": "colour",
            "check": "unseen",
            "count": 1,
            "share": 0.05,
            "threshold": 0.0,
            "reference": None,
            "examples": [{"row": 4, "value": "purple", "event_id": "id-4"}],
            "message": "1 of 20 values of colour are categories the reference does not have (5%)",
        }
    ]
    assert "metrics" not in body and "performance_kind" not in body
    assert [f["name"] for f in body["quality"]] == NAMES


def test_metrics_per_feature_and_check(fitted: DataQuality, reference: pd.DataFrame) -> None:
    metrics = DetectorMetrics("iris", "dq", CollectorRegistry())
    window = clean_window(reference)
    window[:5, 0] = None
    window[6, 2] = "purple"
    metrics.observe(fitted.predict(window), 0.01)

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"inference_service": "iris", "detector": "dq", **labels})

    assert value("infertap_data_quality_share", feature="x", check="missing") == 0.1
    assert value("infertap_data_quality_violation", feature="x", check="missing") == 1
    assert value("infertap_data_quality_violation", feature="colour", check="unseen") == 1
    assert value("infertap_data_quality_violation", feature="n", check="range") == 0
    assert value("infertap_data_quality_violations_total", feature="colour", check="unseen") == 1
    assert value("infertap_data_quality_failed_rows_total", feature="x", check="missing") == 5
    assert value("infertap_data_quality_share", feature="_all", check="duplicate") == 0.0
    metrics.observe(fitted.predict(clean_window(reference)), 0.01)  # a clean window clears the gauges
    assert value("infertap_data_quality_violation", feature="x", check="missing") == 0
    assert value("infertap_data_quality_violations_total", feature="x", check="missing") == 1
    checks = {
        s.labels["check"]
        for f in metrics.registry.collect()
        for s in f.samples
        if f.name.startswith("infertap_data_quality")
    }
    assert checks <= set(CHECKS)
    features = {
        s.labels["feature"]
        for f in metrics.registry.collect()
        for s in f.samples
        if f.name.startswith("infertap_data_quality")
    }
    assert features == {*NAMES, "_all"}  # the schema's names, nothing a client sent


def test_replay_judges_a_file_in_the_specs_windows(tmp_path: Path, reference: pd.DataFrame) -> None:
    """`infertap detect --replay` of a DataQuality spec: the file's nulls and text reach the checks as sent."""
    import io

    from infertap.detectors.replay import replay

    reference.to_csv(tmp_path / "reference.csv", index=False)
    current = reference.dropna().iloc[:40].reset_index(drop=True)
    current["x"] = current["x"].astype(object)
    current.loc[[3, 4, 5, 6], "x"] = None
    current.loc[30, "colour"] = "purple"
    current.to_csv(tmp_path / "current.csv", index=False)
    settings = WorkerSettings(
        name="dq",
        inference_service="iris",
        detector="DataQuality",
        features=[{"name": n} for n in NAMES],
        reference=tmp_path / "reference.csv",
        window={"size": 20},
    )
    out = io.BytesIO()
    outcome = replay(settings, tmp_path / "current.csv", out)
    assert (outcome.windows, outcome.detections, outcome.rejected) == (2, 2, 0)
    first, second = (orjson.loads(line) for line in out.getvalue().splitlines())
    assert first["type"] == second["type"] == "io.infertap.dataquality"
    assert {(v["feature"], v["check"]) for v in first["data"]["violations"]} == {("x", "missing")}
    assert {(v["feature"], v["check"]) for v in second["data"]["violations"]} == {("colour", "unseen")}
