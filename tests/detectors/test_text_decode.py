"""Text out of logged events, on every input form: OpenAI chat (each message selection), completions,
embeddings, reassembled answers, V1 strings, V2 BYTES (JSON and binary), joined pairs, the LLM
response layout; redaction placeholders untouched; bad bodies rejected with a reason of the closed set."""

from __future__ import annotations

import json
import math
import uuid

import numpy as np
import pytest

from infertap.detectors.decode import REASONS, Joiner, records_to_events
from infertap.detectors.framing import make_decoder
from infertap.detectors.settings import FeatureSettings, WorkerSettings
from infertap.detectors.text.frame import LLM_COLUMNS, TextDecoder
from infertap.serving.codec import encode_v2_request
from tests.detectors.records import BUILDER, kafka_record, request, response

pytestmark = pytest.mark.fast

CHAT = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "You are a support bot."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer briefly."}]},
        {"role": "user", "content": "My e-mail is [REDACTED:email], reset my password"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1", "type": "function"}]},
        {"role": "assistant", "content": "Done."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "And my billing address?"},
                {"type": "image_url", "image_url": {"url": "data:..."}},
            ],
        },
    ],
}


def texts(records, mode="request", features=(), **kw):
    events, rejects, _ = records_to_events(records, mode)
    window = TextDecoder(list(features), mode, **kw).decode(events)
    window.rejects = rejects + window.rejects
    return window


def text_feature(name="prompt", **kw):
    return FeatureSettings(name=name, type="text", **kw)


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ("last_user", "And my billing address?"),
        ("user", "My e-mail is [REDACTED:email], reset my password\nAnd my billing address?"),
        ("system", "You are a support bot.\nAnswer briefly."),
        (
            "conversation",
            "You are a support bot.\nAnswer briefly.\nMy e-mail is [REDACTED:email], reset my password\n"
            "Done.\nAnd my billing address?",
        ),
    ],
)
def test_chat_messages_by_selection_with_placeholders_kept(messages, expected):
    window = texts([request(CHAT)], features=[text_feature(messages=messages)])
    assert not window.rejects
    assert window.x.shape == (1, 1) and window.x.dtype == object
    assert window.x[0, 0] == expected


def test_two_text_columns_of_one_chat_request():
    features = [text_feature("prompt"), text_feature("system", messages="system")]
    window = texts([request(CHAT)], features=features)
    assert window.feature_names == ["prompt", "system"]
    assert window.x[0].tolist() == ["And my billing address?", "You are a support bot.\nAnswer briefly."]


def test_completions_prompts_embeddings_inputs_and_v1_strings_give_one_row_each():
    records = [
        request({"model": "m", "prompt": "Once upon a time"}, 0),
        request({"model": "m", "prompt": ["first prompt", "second prompt"]}, 1),
        request({"model": "m", "input": ["embed me", "and me"]}, 2),
        request({"instances": ["a V1 string"]}, 3),
        request({"instances": [{"prompt": "a V1 object"}]}, 4),
        request({"instances": [["a one-string row"]]}, 5),
        request({"inputs": {"prompt": ["columnar V1"]}}, 6),
    ]
    window = texts(records)
    assert not window.rejects
    assert window.x[:, 0].tolist() == [
        "Once upon a time",
        "first prompt",
        "second prompt",
        "embed me",
        "and me",
        "a V1 string",
        "a V1 object",
        "a one-string row",
        "columnar V1",
    ]
    assert window.row_event.tolist() == [0, 1, 1, 2, 2, 3, 4, 5, 6]


def test_v2_bytes_tensors_json_and_binary():
    data = np.array([b"caf\xc3\xa9 au lait", b"second text"], dtype=object)
    v2_json = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["café au lait", "second text"]}]}
    v2_binary, _ = encode_v2_request({"ids": np.array([1, 2], dtype=np.int64), "text": data}, binary=True)
    window = texts([request(v2_json, 0), request(v2_binary, 1, content_type="application/octet-stream")])
    assert not window.rejects, window.rejects
    assert window.x[:, 0].tolist() == ["café au lait", "second text", "café au lait", "second text"]
    named = texts([request(v2_binary, 0)], input_name="ids")
    assert named.rejects[0].reason == "bad_value"  # an INT64 tensor holds numbers, not text


def test_reassembled_answers_one_row_per_choice_and_joined_prompts_repeat():
    eid = str(uuid.uuid4())
    answer = {
        "object": "chat.completion",
        "choices": [
            {"index": 1, "message": {"role": "assistant", "content": "second choice"}, "finish_reason": "length"},
            {"index": 0, "message": {"role": "assistant", "content": "first choice"}, "finish_reason": "stop"},
        ],
    }
    window = texts([response(answer, eid)], mode="response")
    assert window.feature_names == ["response"]
    assert window.x[:, 0].tolist() == ["first choice", "second choice"]
    joiner = Joiner()
    events, _, _ = joiner.add([request(CHAT, 0, eid=eid), response(answer, eid, 1)])
    joined = TextDecoder([], "joined").decode(events)
    assert joined.feature_names == ["prompt", "response"]
    assert joined.x.tolist() == [
        ["And my billing address?", "first choice"],
        ["And my billing address?", "second choice"],
    ]


def test_text_completion_answer_and_v1_predictions():
    records = [
        response({"object": "text_completion", "choices": [{"index": 0, "text": "a completion"}]}, "a", 0),
        response({"predictions": ["a V1 answer"]}, "b", 1),
    ]
    window = texts(records, mode="response")
    assert window.x[:, 0].tolist() == ["a completion", "a V1 answer"]


def test_failed_answers_are_left_out_and_counted_in_the_text_layout():
    records = [
        response({"choices": [{"index": 0, "message": {"content": "fine"}}]}, "a", 0),
        response({"error": {"message": "bad"}}, "b", 1, status=400),
    ]
    window = texts(records, mode="response")
    assert window.x[:, 0].tolist() == ["fine"]
    assert window.excluded["failed_response"] == 1 and [e.id for e in window.left_out] == ["b"]


def test_llm_layout_takes_usage_from_the_extension_and_keeps_errors():
    ok = BUILDER.response(
        "a",
        json.dumps(
            {
                "choices": [
                    {"index": 0, "message": {"content": "", "refusal": "I refuse"}, "finish_reason": "stop"},
                ],
                "usage": {"completion_tokens": 99},
            }
        ).encode(),
        "application/json",
        "{}",
        200,
        extensions={"genaiusageoutputtokens": 7},
    )
    from_body = response(
        {"choices": [{"message": {"content": "cut"}, "finish_reason": "length"}], "usage": {"completion_tokens": 12}},
        "b",
    )
    failed = response({"error": {"message": "overloaded"}}, "c", status=503)
    events, _, _ = records_to_events([kafka_record(ok, 0), from_body, failed], "response")
    window = TextDecoder([], "response", llm=True).decode(events)
    assert window.feature_names == list(LLM_COLUMNS)
    rows = window.x.tolist()
    assert rows[0] == ["", "stop", "I refuse", 0, 7.0, 200]
    assert rows[1] == ["cut", "length", None, 0, 12.0, 200]
    assert rows[2][:4] == ["", None, None, 0] and math.isnan(rows[2][4]) and rows[2][5] == 503
    assert window.excluded["failed_response"] == 0


def test_raw_sse_and_bad_bodies_are_rejected_with_known_reasons():
    raw_sse = BUILDER.response(
        "s", b"data: {broken\n\n", "text/event-stream", "{}", 200, extensions={"capturereason": "sse_chunk_not_json"}
    )
    records_response = [kafka_record(raw_sse, 0), response({"data": [{"embedding": [0.1]}]}, "e", 1)]
    window = texts(records_response, mode="response")
    assert [r.reason for r in window.rejects] == ["not_json", "wrong_shape"]
    assert "could not reassemble" in window.rejects[0].message
    records = [
        request(b"not json", 0),
        request({"model": "m", "prompt": [1, 2, 3]}, 1),  # token ids
        request({"model": "m", "messages": [{"role": "system", "content": "only a system prompt"}]}, 2),
        request({"instances": [3.5]}, 3),
        request({"model": "m", "messages": [{"role": "user", "content": 42}]}, 4),
        request({"model": "m", "prompt": "kept"}, 5),
    ]
    window = texts(records)
    assert [r.reason for r in window.rejects] == ["not_json", "wrong_shape", "wrong_shape", "bad_value", "bad_value"]
    assert all(r.reason in REASONS for r in window.rejects)
    assert "token ids" in window.rejects[1].message and "no user message" in window.rejects[2].message
    assert window.x[:, 0].tolist() == ["kept"]  # the rest of the window is unaffected


def test_the_worker_picks_the_decoder_of_its_detector_and_refuses_mismatches():
    base = {"name": "t", "inference_service": "llm", "reference": "r.txt"}
    assert isinstance(make_decoder(WorkerSettings(**base, detector="TextMMDDrift")), TextDecoder)
    llm = make_decoder(WorkerSettings(**base, detector="LLMResponseSignals", events="response"))
    assert isinstance(llm, TextDecoder) and llm.llm
    with pytest.raises(ValueError, match="judges numbers"):
        WorkerSettings(**base, detector="ScipyKS", features=[{"name": "p", "type": "text"}])
    with pytest.raises(ValueError, match="must be of type text"):
        WorkerSettings(**base, detector="TextOOD", features=[{"name": "x"}])
    with pytest.raises(ValueError, match="reads answers"):
        WorkerSettings(**base, detector="LLMResponseSignals")
