"""Kafka sink: URL parsing, and both client backends delivering CloudEvents (binary mode) to a real broker."""

from __future__ import annotations

import asyncio

import pytest
from delivery_fixtures import BINARY_BODY, assert_same_event, make_event, read_topic

from infertap.logger.sinks import SinkConfigError, build_sink
from infertap.logger.sinks.kafka import KafkaSink, KafkaSinkConfig
from tests.conftest import unique


@pytest.mark.parametrize(
    "url, complaint",
    [
        ("kafka://localhost/t", "'localhost' is not host:port"),
        ("kafka://localhost:9092/", "no topic"),
        ("kafka://localhost:9092/t?acks=2", "option 'acks'"),
        ("kafka://localhost:9092/t?client=aiokafka", "option 'client'"),
        ("kafka://localhost:9092/t?lingerms=5", "option 'lingerms': unknown option"),
        ("kafka://localhost:9092/t?security_protocol=SASL_SSL", "needs sasl_mechanism"),
        (
            "kafka://localhost:9092/t?security_protocol=SASL_SSL&sasl_mechanism=PLAIN&sasl_username=u",
            "needs sasl_username and sasl_password",
        ),
        ("kafka://localhost:9092/bad%20topic", "topic 'bad topic'"),
    ],
)
def test_bad_kafka_urls_name_the_bad_part(url: str, complaint: str) -> None:
    with pytest.raises(SinkConfigError, match=complaint.replace("(", r"\(")):
        KafkaSinkConfig.from_url(url)


def test_kafka_url_options_and_secrets() -> None:
    cfg = KafkaSinkConfig.from_url(
        "kafka://a:9092,b:9093/isvc-events?acks=1&client=kafka-python&security_protocol=SASL_SSL"
        "&sasl_mechanism=SCRAM-SHA-512&sasl_username=u&sasl_password=s3cret&ssl_cafile=/ca.pem"
    )
    assert cfg.brokers == ["a:9092", "b:9093"] and cfg.topic == "isvc-events" and cfg.acks == "1"
    assert cfg.client == "kafka-python" and cfg.sasl_mechanism == "SCRAM-SHA-512" and cfg.ssl_cafile == "/ca.pem"
    assert "s3cret" not in repr(cfg)
    with pytest.raises(SinkConfigError) as err:
        KafkaSinkConfig.from_url("kafka://a:9092/t?sasl_password=s3cret&acks=9")
    assert "s3cret" not in str(err.value)


def test_unknown_scheme_is_a_clear_error() -> None:
    with pytest.raises(SinkConfigError, match="unknown scheme 's3'"):
        build_sink("s3://bucket/events")


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_both_clients_deliver_binary_mode_events(broker, client: str) -> None:
    topic = unique(f"sink-{client}")
    sink = build_sink(f"kafka://{broker.bootstrap}/{topic}", kafka_client=client)
    assert isinstance(sink, KafkaSink) and sink.config.client == client
    events = [
        make_event(i, body=BINARY_BODY if i % 2 else b'{"instances": [[1.0, 2.0]]}', response=i % 3 == 0)
        for i in range(30)
    ]

    async def send() -> None:
        try:
            await sink.send_batch(events[:10])
            await sink.send_batch(events[10:])
        finally:
            await sink.close()

    asyncio.run(send())
    records = read_topic(broker.bootstrap, topic, len(events))
    assert len(records) == len(events)
    by_id = {e.get_id(): e for e in events}
    for record in records:
        assert_same_event(record, by_id[record.key.decode()])
    headers = dict(records[0].headers)
    assert headers["content-type"] == b"application/octet-stream" and headers["ce_specversion"] == b"1.0"


def _events_the_logger_sends() -> list:
    """Every shape of event that reaches the Kafka sink: built by the tap, restored from the
    spool, parsed by the ingest (binary and structured), and str/dict data from other callers."""
    from datetime import datetime, timedelta, timezone

    from cloudevents.core.v1.event import CloudEvent

    from infertap.logger import ingest
    from infertap.logger.delivery import record
    from infertap.logger.events import EventBuilder

    builder = EventBuilder("http://pod/", "iris", "ns", "predictor", "ep", ["x-request-id"], {"team": "ml"})
    bare = EventBuilder("http://pod/")
    tapped = [
        builder.request("id-1", BINARY_BODY, "application/octet-stream", '{"X-Request-Id":["a"]}'),
        builder.response("id-1", b'{"predictions":[1]}', "application/json", "{}", 500, truncated=True),
        bare.request("id-2", b"", None, "{}"),
    ]
    agent = [
        (b"ce-specversion", b"1.0"),
        (b"ce-id", b"agent-1"),
        (b"ce-type", b"t"),
        (b"ce-source", b"s"),
        (b"ce-time", b"2024-01-02T03:04:05.123+02:00"),
        (b"ce-statuscode", b"200"),
        (b"content-type", b"application/json"),
    ]
    structured = [(b"content-type", b"application/cloudevents+json")]
    body = b'{"specversion":"1.0","id":"agent-2","type":"t","source":"s","data":{"x":[1,2]}}'
    other_tz = CloudEvent(
        {
            "id": "tz",
            "type": "t",
            "source": "s",
            "time": datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=-3))),
        },
        b"x",
    )
    return [
        *tapped,
        *(record.decode(record.encode(e)) for e in tapped + [make_event(3, response=True)]),
        make_event(4),
        ingest.parse(agent, b'{"instances":[[1]]}'),
        ingest.parse(structured, body),
        other_tz,
        CloudEvent({"id": "s", "type": "t", "source": "s", "datacontenttype": "text/plain"}, "text data"),
        CloudEvent({"id": "d", "type": "t", "source": "s", "datacontenttype": "application/json"}, {"a": 1}),
    ]


def test_fast_kafka_records_are_byte_identical_to_the_sdk_binding() -> None:
    """The sink's own encoder (`binary_record`, the hot path) must give exactly the key,
    value and headers (names, order, bytes) of cloudevents' `to_binary_event`."""
    from cloudevents.core.bindings.kafka import to_binary_event

    from infertap.logger.sinks.kafka import _FAST_LAYOUT, binary_record, to_records

    assert _FAST_LAYOUT  # else the sink silently uses the SDK per event: this test would not test the fast path
    events = _events_the_logger_sends()
    for event in events:
        sdk = to_binary_event(event, key_mapper=lambda e: e.get_id())
        key, value, headers = binary_record(event)
        assert (key, value) == (sdk.key, sdk.value), event.get_id()
        assert headers == list(sdk.headers.items()), event.get_id()
    assert to_records(events) == [binary_record(e) for e in events]


def test_tap_events_equal_the_validating_constructor() -> None:
    """The tap builds events without the SDK's per-event validation: same attributes and data
    as the validating constructor, and bad static settings still fail (at start-up)."""
    from cloudevents.core.exceptions import CloudEventValidationError
    from cloudevents.core.v1.event import CloudEvent

    from infertap.logger.events import EventBuilder

    builder = EventBuilder("http://pod/", "iris", "ns", "predictor", "", ["x-request-id"], {"a": "b"})
    for event in (
        builder.request("r1", b"\x00\x01", "application/octet-stream", "{}"),
        builder.response("r1", b"{}", None, "{}", 404, truncated=True),
    ):
        checked = CloudEvent(dict(event.get_attributes()), event.get_data())
        assert checked.get_attributes() == event.get_attributes() and checked.get_data() == event.get_data()
        assert event.get_id() == "r1" and event.get_time().tzinfo is not None
    with pytest.raises(CloudEventValidationError):
        EventBuilder("")  # empty source: refused once, not on every request


def test_librdkafka_repeats_are_held_and_counted() -> None:
    import logging

    from infertap.logger.sinks.kafka_confluent import RepeatFilter

    now = [0.0]
    f = RepeatFilter(every=30.0, clock=lambda: now[0])

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("librdkafka", logging.ERROR, __file__, 1, msg, None, None)

    passed = [f.filter(record("FAIL|rdkafka#producer-1| SASL authentication error")) for _ in range(20)]
    assert passed == [True] + [False] * 19  # a retry storm: the first line only
    assert f.filter(record("another message"))  # other messages are not held
    now[0] = 31.0
    r = record("FAIL|rdkafka#producer-1| SASL authentication error")
    assert f.filter(r) and r.getMessage().endswith("(19 more like this in the last 30 s)")


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_an_event_too_large_for_kafka_is_rejected_not_retried(broker, client: str) -> None:
    """A message over the producer's size limit (1 MB by default) can never be delivered:
    the sink refuses it for good (the delivery drops it with a metric), so it cannot hold up
    the spool behind it; the events around it arrive."""
    from infertap.logger.sinks.base import SinkError

    topic = unique(f"big-{client}")
    sink = build_sink(f"kafka://{broker.bootstrap}/{topic}", kafka_client=client)
    events = [make_event(0), make_event(1, body=b"x" * 2_000_000), make_event(2)]

    async def send() -> SinkError:
        try:
            with pytest.raises(SinkError) as exc:
                await sink.send_batch(events)
            return exc.value
        finally:
            await sink.close()

    error = asyncio.run(send())
    assert error.rejected == [1] and not error.failed, (error, error.failed, error.rejected)
    assert sorted(r.key.decode() for r in read_topic(broker.bootstrap, topic, 2)) == ["ev-000000", "ev-000002"]
