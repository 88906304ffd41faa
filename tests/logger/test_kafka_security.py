"""The Kafka sink over TLS and SASL/PLAIN: real clients, the real broker, real delivery.

The embedded broker (Tansu 0.6.0) can do neither TLS nor SASL, so `kafka_front.KafkaFront`
terminates them on loopback in front of it (see that module). Both producer backends are
driven through Delivery with the sink URL's options; what arrives is read back over the
same protocol by another client (kafka-python). A wrong CA or a wrong password must fail
cleanly: events spooled (none lost, none sent), the reason in the log, and delivered once
the operator fixes the secret (the CA file replaced in place, the password corrected in the
URL: the spool folder is named by the URL without its password, so it is picked up again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from delivery_fixtures import assert_same_event, delivery, make_event, read_topic, wait_for

from tests.conftest import free_port, unique
from tests.kafka_front import Certs, KafkaFront, fronted_broker, make_certs, server_context

USER, PASSWORD, WRONG = "infertap", "s3cret-pa55", "not-the-pa55word"
CLIENTS = ["confluent", "kafka-python"]
N = 40


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _front(tmp_path_factory: pytest.TempPathFactory, **kw) -> Iterator[KafkaFront]:
    with fronted_broker(tmp_path_factory.mktemp("broker"), free_port(), **kw) as front:
        yield front


@pytest.fixture(scope="module")
def tls_front(tmp_path_factory, certs) -> Iterator[KafkaFront]:
    yield from _front(tmp_path_factory, ssl_context=server_context(certs))


@pytest.fixture(scope="module")
def mtls_front(tmp_path_factory, certs) -> Iterator[KafkaFront]:
    yield from _front(tmp_path_factory, ssl_context=server_context(certs, client_certs=True))


@pytest.fixture(scope="module")
def sasl_front(tmp_path_factory) -> Iterator[KafkaFront]:
    yield from _front(tmp_path_factory, users={USER: PASSWORD})


@pytest.fixture(scope="module")
def sasl_ssl_front(tmp_path_factory, certs) -> Iterator[KafkaFront]:
    yield from _front(tmp_path_factory, ssl_context=server_context(certs), users={USER: PASSWORD})


def sink_url(front: KafkaFront, topic: str, client: str, **options: str) -> str:
    query = urlencode({"client": client, "delivery_timeout_ms": "2000", **options})
    return f"kafka://{front.bootstrap}/{topic}?{query}"


def sasl_options(protocol: str, certs: Certs, password: str = PASSWORD, mechanism: str = "PLAIN") -> dict[str, str]:
    options = {
        "security_protocol": protocol,
        "sasl_mechanism": mechanism,
        "sasl_username": USER,
        "sasl_password": password,
    }
    if protocol == "SASL_SSL":
        options["ssl_cafile"] = str(certs.ca)
    return options


def reader_options(protocol: str, certs: Certs, client_cert: bool = False) -> dict[str, str]:
    """kafka-python consumer arguments for reading back over `protocol` (`client_cert`: mutual TLS)."""
    options = {"security_protocol": protocol}
    if "SSL" in protocol:
        options["ssl_cafile"] = str(certs.ca)
    if client_cert:
        options.update(ssl_certfile=str(certs.client_cert), ssl_keyfile=str(certs.client_key))
    if protocol.startswith("SASL"):
        options.update(sasl_mechanism="PLAIN", sasl_plain_username=USER, sasl_plain_password=PASSWORD)
    return options


def deliver_all(tmp_path: Path, url: str, events: list) -> dict[str, int]:
    """Submit `events` through a Delivery on `url` and wait until they are all sent."""
    d, _ = delivery(tmp_path, [url])

    async def run() -> None:
        await d.start()
        for e in events:
            d.submit(e)
        await wait_for(d.idle, timeout=90, what="delivery idle")
        await d.stop()

    asyncio.run(run())
    return next(iter(d.counts().values()))


def spool_all(tmp_path: Path, url: str, events: list) -> dict[str, int]:
    """Submit `events` to a sink that cannot authenticate: wait until every one is spooled."""
    d, _ = delivery(tmp_path, [url])
    sink = d.workers[0].sink.name

    async def run() -> None:
        await d.start()
        for e in events:
            d.submit(e)
        await wait_for(lambda: d.counts()[sink]["spooled"] >= len(events), timeout=90, what="all spooled")
        await d.stop(flush_timeout=0.5)

    asyncio.run(run())
    return d.counts()[sink]


def assert_arrived(
    front: KafkaFront, topic: str, events: list, protocol: str, certs: Certs, client_cert: bool = False
) -> None:
    records = read_topic(front.bootstrap, topic, len(events), **reader_options(protocol, certs, client_cert))
    assert sorted(r.key.decode() for r in records) == [e.get_id() for e in events]  # all, once
    for r in records[:5]:
        assert_same_event(r, events[int(r.key.decode()[3:])])


def assert_logged(caplog: pytest.LogCaptureFixture, client: str, *reasons: str) -> None:
    """The reason is logged; for the confluent backend by the delivery worker's own warning."""
    records = [r for r in caplog.records if client == "kafka-python" or r.name.startswith("infertap.logger.delivery")]
    text = "\n".join(r.getMessage() for r in records)
    assert any(reason in text for reason in reasons), text[-2000:]


# --- TLS ---------------------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_ssl_delivers(tls_front, certs, tmp_path, client) -> None:
    topic = unique("tls")
    events = [make_event(i) for i in range(N)]
    url = sink_url(tls_front, topic, client, security_protocol="SSL", ssl_cafile=str(certs.ca))
    counts = deliver_all(tmp_path, url, events)
    assert counts["sent"] == N and counts["spooled"] == 0
    assert_arrived(tls_front, topic, events, "SSL", certs)


@pytest.mark.parametrize("client", CLIENTS)
def test_ssl_wrong_ca_spools_then_delivers_once_fixed(tls_front, certs, tmp_path, client, caplog) -> None:
    caplog.set_level(logging.WARNING)
    topic = unique("tls-bad-ca")
    events = [make_event(i) for i in range(N)]
    cafile = tmp_path / "ca.pem"  # a mounted secret: fixed in place, the URL stays the same
    cafile.write_bytes(certs.other_ca.read_bytes())
    url = sink_url(tls_front, topic, client, security_protocol="SSL", ssl_cafile=str(cafile))

    counts = spool_all(tmp_path, url, events)
    assert counts["sent"] == 0 and counts["dropped"] == 0 and counts["spooled"] == N
    assert any((tmp_path / "spool").rglob("*.seg"))
    assert_logged(caplog, client, "certificate verify failed", "CERTIFICATE_VERIFY_FAILED")

    cafile.write_bytes(certs.ca.read_bytes())
    counts = deliver_all(tmp_path, url, [])  # the spool alone
    assert counts["sent"] == N and counts["dropped"] == 0
    assert_arrived(tls_front, topic, events, "SSL", certs)


@pytest.mark.parametrize("client", CLIENTS)
def test_mutual_tls_spools_without_a_client_certificate_and_delivers_with_one(
    mtls_front, certs, tmp_path, client
) -> None:
    """The broker asks for a client certificate (mutual TLS): without `ssl_certfile` and
    `ssl_keyfile` the handshake fails and every event spools; with them the spool and the
    new events arrive."""
    topic = unique("mtls")
    events = [make_event(i) for i in range(N)]
    plain = sink_url(mtls_front, topic, client, security_protocol="SSL", ssl_cafile=str(certs.ca))
    counts = spool_all(tmp_path, plain, events[: N // 2])
    assert counts["sent"] == 0 and counts["spooled"] == N // 2

    mutual = sink_url(
        mtls_front,
        topic,
        client,
        security_protocol="SSL",
        ssl_cafile=str(certs.ca),
        ssl_certfile=str(certs.client_cert),
        ssl_keyfile=str(certs.client_key),
    )
    counts = deliver_all(tmp_path, mutual, events[N // 2 :])
    assert counts["sent"] == N and counts["dropped"] == 0  # the spool of the URL without the certificate too
    assert_arrived(mtls_front, topic, events, "SSL", certs, client_cert=True)


# --- SASL/PLAIN ----------------------------------------------------------------------------


@pytest.fixture(params=["SASL_PLAINTEXT", "SASL_SSL"])
def sasl(request, sasl_front, sasl_ssl_front) -> tuple[str, KafkaFront]:
    return request.param, sasl_front if request.param == "SASL_PLAINTEXT" else sasl_ssl_front


@pytest.mark.parametrize("client", CLIENTS)
def test_sasl_delivers(sasl, certs, tmp_path, client) -> None:
    protocol, front = sasl
    topic = unique("sasl")
    events = [make_event(i) for i in range(N)]
    before = front.authenticated
    counts = deliver_all(tmp_path, sink_url(front, topic, client, **sasl_options(protocol, certs)), events)
    assert counts["sent"] == N and counts["spooled"] == 0
    assert front.authenticated > before  # the producer did authenticate (the front lets nothing else in)
    assert_arrived(front, topic, events, protocol, certs)


@pytest.mark.parametrize("client", CLIENTS)
def test_sasl_wrong_password_spools_then_delivers_once_fixed(sasl, certs, tmp_path, client, caplog) -> None:
    caplog.set_level(logging.WARNING)
    protocol, front = sasl
    topic = unique("sasl-bad")
    events = [make_event(i) for i in range(N)]
    refused = front.refused

    counts = spool_all(tmp_path, sink_url(front, topic, client, **sasl_options(protocol, certs, WRONG)), events)
    assert counts["sent"] == 0 and counts["dropped"] == 0 and counts["spooled"] == N
    assert front.refused > refused
    assert_logged(caplog, client, "Invalid username or password")
    assert not any(WRONG in r.getMessage() for r in caplog.records)  # the password itself never logged

    counts = deliver_all(tmp_path, sink_url(front, topic, client, **sasl_options(protocol, certs)), [])
    assert counts["sent"] == N and counts["dropped"] == 0
    assert_arrived(front, topic, events, protocol, certs)


# --- SASL/SCRAM ----------------------------------------------------------------------------


# each client with one of the two hashes: both clients and both hashes, at half the suite time
@pytest.mark.parametrize("client, mechanism", [("confluent", "SCRAM-SHA-256"), ("kafka-python", "SCRAM-SHA-512")])
def test_scram_delivers_and_a_wrong_password_spools(sasl_front, certs, tmp_path, client, mechanism, caplog) -> None:
    """SCRAM (a salted challenge instead of the password on the wire): the front checks the
    client's proof with the password it knows; a wrong password fails the proof."""
    caplog.set_level(logging.WARNING)
    topic = unique("scram")
    events = [make_event(i) for i in range(N)]
    refused = sasl_front.refused
    wrong = sink_url(sasl_front, topic, client, **sasl_options("SASL_PLAINTEXT", certs, WRONG, mechanism))
    counts = spool_all(tmp_path, wrong, events[: N // 2])
    assert counts["sent"] == 0 and counts["spooled"] == N // 2 and sasl_front.refused > refused
    assert not any(WRONG in r.getMessage() for r in caplog.records)

    logins = sasl_front.mechanisms[mechanism]
    right = sink_url(sasl_front, topic, client, **sasl_options("SASL_PLAINTEXT", certs, mechanism=mechanism))
    counts = deliver_all(tmp_path, right, events[N // 2 :])
    assert counts["sent"] == N and counts["dropped"] == 0  # the spool of the wrong password too
    assert sasl_front.mechanisms[mechanism] > logins  # the producer logged in with SCRAM, not PLAIN
    assert_arrived(sasl_front, topic, events, "SASL_PLAINTEXT", certs)
