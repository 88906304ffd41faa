"""The one kafka:// parser and the TLS/SASL options: what every part that reads or writes Kafka agrees on."""

from __future__ import annotations

import pytest

from infertap.stream.kafka_url import KafkaURL, KafkaURLError
from infertap.stream.security import KafkaSecurity, kafka_python_options

pytestmark = pytest.mark.fast  # no broker, no server child


def test_ipv6_brokers_in_brackets() -> None:
    url = KafkaURL.parse("kafka://[::1]:9093/iris-events")
    assert url.hosts == (("::1", 9093),) and url.topic == "iris-events" and url.is_local
    assert url.bootstrap == "[::1]:9093"  # what librdkafka takes; "::1:9093" would not parse
    assert KafkaURL.parse("kafka://[::1]").hosts == (("::1", 9092),)
    assert str(url) == "kafka://[::1]:9093/iris-events"
    with pytest.raises(KafkaURLError, match="without brackets"):
        KafkaURL.parse("kafka://::1:9092/t")
    with pytest.raises(KafkaURLError, match="bad IPv6"):
        KafkaURL.parse("kafka://[::1:9092/t")


def test_several_brokers() -> None:
    url = KafkaURL.parse("kafka://a.example:19092, b:2 ,[fe80::1]:3/t?acks=all")
    assert url.hosts == (("a.example", 19092), ("b", 2), ("fe80::1", 3))
    assert url.brokers == ["a.example:19092", "b:2", "[fe80::1]:3"]
    assert url.bootstrap == "a.example:19092,b:2,[fe80::1]:3" and not url.is_local
    assert KafkaURL.from_bootstrap("a:1,b").bootstrap == "a:1,b:9092"


def test_the_topic_is_optional_and_a_writer_asks_for_it() -> None:
    url = KafkaURL.parse("kafka://localhost:9092")
    assert url.topic is None and KafkaURL.parse("kafka://localhost:9092/").topic is None
    with pytest.raises(KafkaURLError, match="names no topic"):
        url.require_topic()
    assert url.with_topic("x-events").require_topic() == "x-events"
    assert KafkaURL.parse("kafka://h:1/a%2Eb").topic == "a.b"  # percent-decoded
    with pytest.raises(KafkaURLError, match="topic 'bad topic'"):
        KafkaURL.parse("kafka://h:1/bad%20topic")


@pytest.mark.parametrize(
    "url, complaint",
    [
        ("http://h:1/t", "must start with kafka://"),
        ("kafka:///t", "names no broker"),
        ("kafka://:9092/t", "empty host"),
        ("kafka://h:notaport/t", "bad port 'notaport'"),
        ("kafka://h:70000/t", "bad port '70000'"),
        ("kafka://h$x:1/t", "bad host"),
        ("kafka://h:1/t?acks=1&acks=all", "option 'acks' twice"),
    ],
)
def test_malformed_urls_say_what_is_wrong(url: str, complaint: str) -> None:
    with pytest.raises(KafkaURLError, match=complaint) as err:
        KafkaURL.parse(url)
    assert isinstance(err.value, ValueError)


def test_explicit_ports_when_the_caller_wants_them() -> None:
    assert KafkaURL.parse("kafka://localhost/t").hosts == (("localhost", 9092),)
    with pytest.raises(KafkaURLError, match="'localhost' is not host:port"):
        KafkaURL.parse("kafka://localhost/t", default_port=None)


def test_errors_never_show_the_options() -> None:
    with pytest.raises(KafkaURLError) as err:
        KafkaURL.parse("kafka://h:bad/t?sasl_password=s3cret")
    assert "s3cret" not in str(err.value) and "h:bad" in str(err.value)
    with pytest.raises(ValueError) as err:
        _ = KafkaURL.parse(
            "kafka://h:1/t?security_protocol=SASL_SSL&sasl_mechanism=PLAIN&sasl_password=s3cret"
        ).security
    assert "needs sasl_username and sasl_password" in str(err.value) and "s3cret" not in str(err.value)


def test_options_become_librdkafka_properties() -> None:
    url = KafkaURL.parse(
        "kafka://b:9093/t?acks=all&client=confluent&security_protocol=SASL_SSL&sasl_mechanism=SCRAM-SHA-512"
        "&sasl_username=u&sasl_password=p%26w&ssl_cafile=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem"
    )
    assert url.options["acks"] == "all" and url.options["sasl_password"] == "p&w"
    assert url.security.librdkafka() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "u",
        "sasl.password": "p&w",
        "ssl.ca.location": "/ca.pem",
        "ssl.certificate.location": "/c.pem",
        "ssl.key.location": "/k.pem",
    }
    assert url.security.kafka_python() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "u",
        "sasl_plain_password": "p&w",
        "ssl_cafile": "/ca.pem",
        "ssl_certfile": "/c.pem",
        "ssl_keyfile": "/k.pem",
    }
    assert "p&w" not in repr(url.security)
    assert KafkaURL.parse("kafka://b:1/t?acks=1").security.librdkafka() == {}  # PLAINTEXT is the default
    assert KafkaURL.parse("kafka://b:1/t?security_protocol=SSL").security.librdkafka() == {"security.protocol": "SSL"}


@pytest.mark.parametrize(
    "options, complaint",
    [
        ({"security_protocol": "TLS"}, "security_protocol must be one of"),
        ({"security_protocol": "SASL_SSL"}, "needs sasl_mechanism"),
        ({"sasl_mechanism": "PLAIN", "sasl_username": "u"}, "need security_protocol=SASL_SSL"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "MD5"}, "sasl_mechanism must be one of"),
    ],
)
def test_security_options_that_do_not_fit(options: dict, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        KafkaSecurity.from_options(options)


def test_kafka_python_takes_only_what_it_knows() -> None:
    assert kafka_python_options({"sasl.username": "u"}) == {"sasl_plain_username": "u"}
    with pytest.raises(ValueError, match="not fetch.min.bytes"):
        kafka_python_options({"fetch.min.bytes": "1"})


def test_the_sink_and_the_planner_parse_with_it() -> None:
    """The logger's sink and `infertap up` read one URL the same way (one parser, one translation)."""
    from infertap.logger.sinks.kafka import KafkaSinkConfig
    from infertap.logger.sinks.kafka_confluent import security_config
    from infertap.stack.plan import kafka_security

    raw = "kafka://[::1]:9092,b:9093/t?security_protocol=SSL&ssl_cafile=/ca.pem&acks=1"
    sink = KafkaSinkConfig.from_url(raw)
    assert sink.brokers == KafkaURL.parse(raw).brokers == ["[::1]:9092", "b:9093"]
    assert security_config(sink) == kafka_security(raw, "here") == KafkaURL.parse(raw).security.librdkafka()
