"""Kafka sink: URL parsing, and both client backends delivering CloudEvents (binary mode) to a real broker."""
from __future__ import annotations

import asyncio

import pytest
from delivery_fixtures import BINARY_BODY, assert_same_event, make_event, read_topic

from logger.sinks import SinkConfigError, build_sink
from logger.sinks.kafka import KafkaSink, KafkaSinkConfig
from tests.conftest import unique


@pytest.mark.parametrize("url, complaint", [
    ("kafka://localhost/t", "'localhost' is not host:port"),
    ("kafka://localhost:9092/", "no topic"),
    ("kafka://localhost:9092/t?acks=2", "option 'acks'"),
    ("kafka://localhost:9092/t?client=aiokafka", "option 'client'"),
    ("kafka://localhost:9092/t?lingerms=5", "option 'lingerms': unknown option"),
    ("kafka://localhost:9092/t?security_protocol=SASL_SSL", "needs sasl_mechanism"),
    ("kafka://localhost:9092/t?security_protocol=SASL_SSL&sasl_mechanism=PLAIN&sasl_username=u",
     "needs sasl_username and sasl_password"),
    ("kafka://localhost:9092/bad%20topic", "topic 'bad topic'"),
])
def test_bad_kafka_urls_name_the_bad_part(url: str, complaint: str) -> None:
    with pytest.raises(SinkConfigError, match=complaint.replace("(", r"\(")):
        KafkaSinkConfig.from_url(url)


def test_kafka_url_options_and_secrets() -> None:
    cfg = KafkaSinkConfig.from_url(
        "kafka://a:9092,b:9093/isvc-events?acks=1&client=kafka-python&security_protocol=SASL_SSL"
        "&sasl_mechanism=SCRAM-SHA-512&sasl_username=u&sasl_password=s3cret&ssl_cafile=/ca.pem")
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
    events = [make_event(i, body=BINARY_BODY if i % 2 else b'{"instances": [[1.0, 2.0]]}', response=i % 3 == 0)
              for i in range(30)]

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
