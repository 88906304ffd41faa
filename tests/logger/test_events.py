"""CloudEvents as KServe's agent builds them: attributes, metadata allow-list, bindings."""

from __future__ import annotations

import json
import os

import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat

from infertap.logger.events import (
    REQUEST_TYPE,
    RESPONSE_TYPE,
    EventBuilder,
    canonical_header,
    decode_metadata,
    event_id,
)

pytestmark = pytest.mark.fast  # starts no process (make test-fast)


def builder(**kw) -> EventBuilder:
    base = {
        "source": "http://pod-1/",
        "inference_service": "iris",
        "namespace": "ns",
        "component": "predictor",
        "endpoint": "default",
    }
    return EventBuilder(**{**base, **kw})


def test_request_and_response_attributes_as_kserve():
    b = builder(metadata_annotations={"team": "ml"})
    req = b.request("id-1", b'{"instances":[[1,2]]}', "application/json", "{}")
    resp = b.response("id-1", b'{"predictions":[0]}', "application/json", "{}", 200)
    for event, kind in ((req, REQUEST_TYPE), (resp, RESPONSE_TYPE)):
        assert event.get_type() == kind
        assert event.get_id() == "id-1"
        assert event.get_specversion() == "1.0"
        assert event.get_source() == "http://pod-1/"
        assert event.get_datacontenttype() == "application/json"
        assert event.get_time().tzinfo is not None
        assert event.get_extension("inferenceservicename") == "iris"
        assert event.get_extension("namespace") == "ns"
        assert event.get_extension("component") == "predictor"
        assert event.get_extension("endpoint") == "default"
        assert json.loads(event.get_extension("annotations")) == {"team": "ml"}
    assert resp.get_extension("statuscode") == 200
    assert req.get_extension("statuscode") is None
    assert req.get_data() == b'{"instances":[[1,2]]}'


def test_annotations_only_when_non_empty_and_no_empty_content_type():
    event = builder().request("x", b"", None, "{}")
    assert "annotations" not in event.get_attributes()
    assert "datacontenttype" not in event.get_attributes()


def test_metadata_allow_list_is_case_insensitive_with_canonical_keys():
    b = builder(metadata_headers=["X-REQUEST-ID", "x-b3-traceid"])
    headers = [
        (b"x-request-id", b"r1"),
        (b"X-B3-TraceId", b"t1"),
        (b"x-request-id", b"r2"),
        (b"authorization", b"Bearer secret"),
        (b"cookie", b"s=1"),
        (b"x-other", b"o"),
    ]
    assert decode_metadata(b.metadata(headers)) == {"X-Request-Id": ["r1", "r2"], "X-B3-Traceid": ["t1"]}


def test_authorization_and_cookie_only_when_allow_listed():
    headers = [(b"authorization", b"Bearer secret"), (b"cookie", b"s=1")]
    assert builder(metadata_headers=["x-request-id"]).metadata(headers) == "{}"
    assert decode_metadata(builder(metadata_headers=["Authorization"]).metadata(headers)) == {
        "Authorization": ["Bearer secret"]
    }


def test_ce_id_header_or_new_uuid():
    assert event_id([(b"ce-id", b"abc")]) == "abc"
    a, b = event_id([]), event_id([])
    assert a != b and len(a) == 36
    assert canonical_header("x-b3-TRACEID") == "X-B3-Traceid"


def test_binary_body_byte_exact_through_both_bindings():
    body = os.urandom(4096) + b"\xff\xfe\x00"
    event = builder().request("bin-1", body, "application/octet-stream", "{}")
    msg = ce_kafka.to_binary(event, JSONFormat(), key_mapper=lambda e: e.get_id())
    assert msg.value == body and msg.key == "bin-1"
    assert msg.headers["ce_type"] == REQUEST_TYPE.encode()
    back = ce_kafka.from_binary(msg, JSONFormat())
    assert back.get_data() == body
    http_msg = ce_http.to_binary(event, JSONFormat())
    assert http_msg.body == body and http_msg.headers["content-type"] == "application/octet-stream"
