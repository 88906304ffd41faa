"""Decoding windows of logged events into one frame: V1, V2 JSON and binary, joins, rejects."""

from __future__ import annotations

import numpy as np
import pytest

from infertap.detectors.decode import Decoder, Joiner, Record, records_to_events
from infertap.detectors.settings import FeatureSettings
from infertap.serving.codec import InferenceResponse, ResponseOutput, encode_v2_request, encode_v2_response
from tests.detectors.records import request, response

F4 = [FeatureSettings(name=n) for n in ("a", "b", "c", "d")]


def decode(records, features=F4, mode="request", **kw):
    events, rejects, ignored = records_to_events(records, mode)
    window = Decoder(features, mode, **kw).decode(events)
    window.rejects = rejects + window.rejects
    return window, ignored


def test_v1_instances_of_many_events_become_one_frame_in_event_order():
    rows = np.arange(24, dtype=float).reshape(6, 4)
    records = [
        request({"instances": rows[:2].tolist()}, 0),
        request({"instances": rows[2:3].tolist()}, 1),
        request({"inputs": rows[3:6].tolist()}, 2),
    ]
    window, _ = decode(records)
    np.testing.assert_array_equal(window.x, rows)
    assert window.row_event.tolist() == [0, 0, 1, 2, 2, 2]
    assert window.event_ids == [r.header("ce_id") for r in records]
    assert list(window.frame().columns) == ["a", "b", "c", "d"]


def test_v1_dict_rows_and_columnar_inputs_follow_feature_names():
    records = [
        request({"instances": [{"d": 4, "c": 3, "b": 2, "a": 1}]}, 0),
        request({"inputs": {"a": [5, 9], "b": [6, 10], "c": [7, 11], "d": [8, 12]}}, 1),
    ]
    window, _ = decode(records)
    np.testing.assert_array_equal(window.x, [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]])


def test_v2_json_and_binary_tensors_mixed_with_v1_keep_event_order():
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    v2_json, _ = encode_v2_request({"input-0": x[1:3]})
    v2_binary, headers = encode_v2_request({"input-0": x[3:5]}, binary=True)
    records = [
        request({"instances": x[:1].tolist()}, 0),
        request(v2_json, 1),
        request(v2_binary, 2, content_type="application/octet-stream"),
    ]
    window, _ = decode(records)
    assert not window.rejects
    np.testing.assert_allclose(window.x, x, rtol=1e-6)
    assert window.row_event.tolist() == [0, 1, 1, 2, 2]


def test_v2_per_feature_tensors_and_named_input():
    cols = {n: np.array([i, i + 10], dtype=np.float64) for i, n in enumerate("abcd")}
    body, _ = encode_v2_request(cols)
    window, _ = decode([request(body, 0)])
    np.testing.assert_array_equal(window.x, [[0, 1, 2, 3], [10, 11, 12, 13]])
    two, _ = encode_v2_request({"other": np.zeros((1, 2)), "main": np.ones((1, 4))})
    window, _ = decode([request(two, 0)], input_name="main")
    np.testing.assert_array_equal(window.x, [[1, 1, 1, 1]])


def test_rejects_name_the_reason_and_leave_the_rest_of_the_window():
    good = {"instances": [[1, 2, 3, 4]]}
    bad_v2 = b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FLOAT99","data":[1,2,3,4]}]}'
    records = [
        request(good, 0),
        request(b"not json at all", 1),
        request({"instances": [[1, 2, 3]]}, 2),
        request({"instances": [[1, 2], [3, 4, 5, 6]]}, 3),
        request(bad_v2, 4),
        request({"instances": [[1, "x", 3, 4]]}, 5),
        request({"rows": []}, 6),
        Record("iris-events", 0, 7, b"{}", {"content-type": b"application/json"}),
        request(good, 8),
    ]
    window, _ = decode(records)
    reasons = {r.record.offset: r.reason for r in window.rejects}
    assert reasons == {
        1: "not_json",
        2: "wrong_feature_count",
        3: "wrong_feature_count",
        4: "unknown_type",
        5: "bad_value",
        6: "wrong_shape",
        7: "missing_attributes",
    }
    np.testing.assert_array_equal(window.x, [[1, 2, 3, 4], [1, 2, 3, 4]])
    assert [e.records[0].offset for e in window.events] == [0, 8]
    assert window.row_event.tolist() == [0, 1]


def test_unknown_event_type_is_rejected_and_responses_are_ignored_in_request_mode():
    rec = request({"instances": [[1, 2, 3, 4]]}, 0)
    odd = Record(rec.topic, 0, 1, rec.value, {**rec.headers, "ce_type": b"com.example.other"})
    resp = response({"predictions": [1]}, rec.header("ce_id"), 2)
    window, ignored = decode([rec, odd, resp])
    assert [r.reason for r in window.rejects] == ["unknown_type"]
    assert ignored == 1 and window.x.shape == (1, 4)


def test_categorical_values_become_codes_and_unknown_categories_are_rejected():
    features = [
        FeatureSettings(name="x"),
        FeatureSettings(name="colour", type="categorical", categories=["red", "green"]),
    ]
    records = [request({"instances": [[1.5, "green"], [2.5, "red"]]}, 0), request({"instances": [[1, "blue"]]}, 1)]
    window, _ = decode(records, features)
    np.testing.assert_array_equal(window.x, [[1.5, 1], [2.5, 0]])
    assert [(r.record.offset, r.reason) for r in window.rejects] == [(1, "unknown_category")]


def test_response_mode_reads_v1_predictions_and_v2_outputs():
    out = [FeatureSettings(name="p0"), FeatureSettings(name="p1")]
    v2, _ = encode_v2_response(
        InferenceResponse(
            model_name="m",
            outputs=[ResponseOutput(name="out", shape=[1, 2], datatype="FP64", data=np.array([[0.3, 0.7]]))],
        )
    )
    records = [
        response({"predictions": [[0.1, 0.9], [0.8, 0.2]]}, "e1", 0),
        response(v2, "e2", 1),
        response({"error": "boom"}, "e3", 2, status=500),
    ]
    window, ignored = decode(records, out, mode="response")
    np.testing.assert_allclose(window.x, [[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    # the failed response is in the window, left out of its frame and counted (issue 19)
    assert ignored == 0 and window.excluded == {"failed_response": 1, "missing_value": 0}
    assert [e.id for e in window.left_out] == ["e3"] and window.event_ids == ["e1", "e2"]


def test_joined_mode_pairs_requests_with_responses_by_id():
    features = F4 + [FeatureSettings(name="pred", source="output")]
    joiner = Joiner(timeout=10)
    r1, r2 = (
        request({"instances": [[1, 2, 3, 4]]}, 0, eid="e1", timestamp=100),
        request({"instances": [[5, 6, 7, 8]]}, 1, eid="e2", timestamp=100),
    )
    events, _, _ = joiner.add([r1, r2, response({"predictions": [0]}, "e1", 2, timestamp=100)])
    assert [e.id for e in events] == ["e1"] and set(joiner.requests) == {"e2"}
    window = Decoder(features, "joined").decode(events)
    np.testing.assert_array_equal(window.x, [[1, 2, 3, 4, 0]])
    expired, _ = joiner.expire(now=200)
    assert [(r.record.offset, r.reason) for r in expired] == [(1, "no_response")]


def test_joined_rows_must_match():
    features = F4 + [FeatureSettings(name="pred", source="output")]
    joiner = Joiner()
    events, _, _ = joiner.add(
        [request({"instances": [[1, 2, 3, 4]]}, 0, eid="e"), response({"predictions": [0, 1]}, "e", 1)]
    )
    window = Decoder(features, "joined").decode(events)
    assert [r.reason for r in window.rejects] == ["wrong_shape"] and window.x.shape[0] == 0


@pytest.mark.parametrize("n_events", [1, 1000])
def test_empty_feature_list_takes_the_first_events_width(n_events):
    records = [request({"instances": [[i, i + 1, i + 2]]}, i) for i in range(n_events)]
    records.append(request({"instances": [[1, 2]]}, n_events))
    window, _ = decode(records, features=[])
    assert window.x.shape == (n_events, 3)
    assert window.feature_names == ["f0", "f1", "f2"]
    assert [r.reason for r in window.rejects] == ["wrong_feature_count"]


def test_rows_with_null_nan_or_infinity_are_dropped_and_counted():
    """JSON null (V1), NaN and infinity (V2 binary FP32) rows leave the frame; the rest stays judged."""
    nan_row = np.array([[1, np.nan, 3, 4], [5, 6, 7, 8]], dtype=np.float32)
    inf_row, _ = encode_v2_request({"input-0": np.array([[np.inf, 1, 2, 3]], dtype=np.float32)}, binary=True)
    nan_body, _ = encode_v2_request({"input-0": nan_row}, binary=True)
    records = [
        request({"instances": [[1, 2, 3, 4]]}, 0),
        request({"instances": [[1, 3, None, 1]]}, 1),
        request({"instances": [[None, None, None, None]]}, 2),
        request(nan_body, 3, content_type="application/octet-stream"),
        request(inf_row, 4, content_type="application/octet-stream"),
    ]
    window, _ = decode(records)
    np.testing.assert_array_equal(window.x, [[1, 2, 3, 4], [5, 6, 7, 8]])
    assert window.row_event.tolist() == [0, 1]
    assert [e.records[0].offset for e in window.events] == [0, 3]
    assert [e.records[0].offset for e in window.left_out] == [1, 2, 4]
    assert window.excluded == {"failed_response": 0, "missing_value": 4} and not window.rejects


def test_missing_values_can_be_dead_lettered_or_passed_through():
    records = [request({"instances": [[1, 2, 3, 4], [1, None, 3, 4]]}, 0), request({"instances": [[5, 6, 7, 8]]}, 1)]
    events, _, _ = records_to_events(records, "request")
    dead = Decoder(F4, "request", missing="deadletter").decode(events)
    assert [(r.record.offset, r.reason) for r in dead.rejects] == [(0, "missing_value")]
    assert "'b'" in dead.rejects[0].message
    np.testing.assert_array_equal(dead.x, [[5, 6, 7, 8]])
    assert dead.row_event.tolist() == [0] and dead.event_ids == [records[1].header("ce_id")]
    passed = Decoder(F4, "request", missing="pass").decode(events)
    assert passed.x.shape == (3, 4) and np.isnan(passed.x[1, 1]) and passed.excluded["missing_value"] == 0


def test_joined_mode_leaves_out_requests_whose_response_failed():
    features = F4 + [FeatureSettings(name="pred", source="output")]
    joiner = Joiner()
    events, _, ignored = joiner.add(
        [
            request({"instances": [[1, 2, 3, 4]]}, 0, eid="ok"),
            request({"instances": [[1, 3, None, 1]]}, 1, eid="bad"),
            response({"predictions": [0]}, "ok", 2),
            response({"error": "Input contains NaN"}, "bad", 3, status=400),
        ]
    )
    assert ignored == 0 and [(e.id, e.failed) for e in events] == [("ok", False), ("bad", True)]
    window = Decoder(features, "joined").decode(events)
    np.testing.assert_array_equal(window.x, [[1, 2, 3, 4, 0]])
    assert window.excluded == {"failed_response": 1, "missing_value": 0} and not window.rejects
