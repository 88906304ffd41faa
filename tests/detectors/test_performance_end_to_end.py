"""Ground truth end to end: the real logger sidecar in front of the real model server (the iris
model from models/), the embedded broker, the feedback endpoint, `infertap feedback`, and the
realised-performance worker as a process (`infertap detect SPEC`).

Label delays are event times (the feedback's `time` minus the prediction's), so "minutes late"
is a time five minutes after the request was sent, not a five-minute sleep.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_iris

from tests.conftest import ROOT, Child, free_port, unique
from tests.detectors.conftest import KafkaTools, body, metric

CLASSES = ["setosa", "versicolor", "virginica"]
TOKEN = "feedback-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MODEL = "iris-model"


@pytest.fixture(scope="module")
def model_server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The sklearn iris model, served for the whole module (its sidecars come per test)."""
    port = free_port()
    log = tmp_path_factory.mktemp("serving") / "serving.log"
    child = Child(
        [
            sys.executable,
            "-m",
            "infertap.serving",
            "--model-name",
            MODEL,
            "--model-format",
            "sklearn",
            "--storage-uri",
            str(models_dir / "sklearn-iris"),
            "--http-port",
            str(port),
        ],
        log,
    )
    try:
        child.wait_http(f"http://127.0.0.1:{port}/v2/health/ready", timeout=120)
        yield f"127.0.0.1:{port}"
    finally:
        child.stop()


@pytest.fixture
def sidecar(spawn, broker, kafka: KafkaTools, model_server: str) -> Callable[..., tuple[str, str]]:
    """`sidecar(partitions)`: a fresh InferenceService name, its topics (events and feedback with
    `partitions` each) and a logger sidecar in front of the model server; (URL, isvc)."""

    def start(partitions: int = 2) -> tuple[str, str]:
        isvc = unique("iris")
        for topic in (f"{isvc}-events", f"{isvc}-feedback"):
            kafka.create_topic(topic, partitions)
        port = free_port()
        child = spawn(
            [
                sys.executable,
                "-m",
                "infertap.sidecar",
                "--port",
                str(port),
                "--component-port",
                model_server.split(":")[1],
                "--inference-service",
                isvc,
                "--log-url",
                f"kafka://{broker.bootstrap}/{isvc}-events",
                "--request-id-header",
                "x-request-id",
                "--feedback-task",
                "classification",
                "--feedback-classes",
                ",".join(CLASSES),
                "--auth-token",
                TOKEN,
            ],
            name="logger",
        )
        child.wait_http(f"http://127.0.0.1:{port}/infertap/metrics")
        return f"http://127.0.0.1:{port}", isvc

    return start


@pytest.fixture
def worker(spawn, broker, detector_yaml, tmp_path: Path) -> Callable[..., Child]:
    """`worker(isvc, window, **params)`: the realised-performance worker of `isvc` (`infertap detect`)."""

    def start(isvc: str, window: int, state: Path | None = None, group: str | None = None, **params) -> Child:
        spec = detector_yaml(
            f"{isvc}-perf",
            {
                "source": {
                    "inferenceService": isvc,
                    "bootstrap": broker.bootstrap,
                    "consumerGroup": group or unique("perf"),
                },
                "detector": {
                    "name": "RealisedPerformance",
                    "params": {"task": "classification", "classes": CLASSES, **params},
                },
                "window": {"size": window},
                "stateDir": str(state or tmp_path / "state"),
            },
        )
        port = free_port()
        child = spawn(
            [sys.executable, "-m", "infertap", "detect", str(spec), "--metrics-port", str(port)],
            env={"PYTHONPATH": str(ROOT)},
            name="performance",
        )
        child.wait_http(f"http://127.0.0.1:{port}/metrics", timeout=60)
        child.metrics_url = f"http://127.0.0.1:{port}/metrics"  # type: ignore[attr-defined]
        return child

    return start


def predict(client: httpx.Client, url: str, ident: str, row: np.ndarray, v2: bool) -> tuple[list[float], float]:
    """One request through the sidecar with X-Request-Id; (class probabilities, when it was sent)."""
    sent = time.time()
    values = [float(v) for v in row]
    if v2:
        reply = client.post(
            f"{url}/v2/models/{MODEL}/infer",
            json={
                "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": values}],
                "parameters": {"predict_proba": True},
            },
            headers={"X-Request-Id": ident},
        )
        assert reply.status_code == 200, reply.text
        return reply.json()["outputs"][0]["data"], sent
    reply = client.post(
        f"{url}/v1/models/{MODEL}:predict",
        json={"instances": [values], "parameters": {"predict_proba": True}},
        headers={"X-Request-Id": ident},
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["predictions"][0], sent


def records(bootstrap: str, topic: str, count: int, timeout: float = 60.0) -> list:
    """At least `count` raw records of `topic` (kafka-python, from the beginning)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=500,
    )
    out, deadline = [], time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            out += list(consumer)
    finally:
        consumer.close()
    return out


def wait_metric(child: Child, name: str, value: float, timeout: float = 60.0, **labels: str) -> None:
    """Wait until the worker's metric `name` reads `value`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metric(child.metrics_url, name, **labels) == value:  # type: ignore[attr-defined]
            return
        if child.proc.poll() is not None:
            raise AssertionError(f"the worker exited {child.proc.returncode}:\n{child.tail()}")
        time.sleep(0.2)
    raise AssertionError(f"{name}{labels} is not {value} after {timeout}s:\n{child.tail()}")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def windows(kafka: KafkaTools, isvc: str, count: int, timeout: float = 90.0) -> list[dict]:
    """The performance windows on `<isvc>-detections`, a republished one (same id) once."""
    seen: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < count and time.monotonic() < deadline:
        for event in kafka.read(f"{isvc}-detections", count, timeout=5):
            assert event.get_type() == "io.infertap.performance"
            seen[event.get_id()] = body(event)
    return list(seen.values())


def test_feedback_endpoint_answers_and_partitions_like_the_events(sidecar, broker) -> None:
    url, isvc = sidecar()
    feedback = f"{url}/v1/models/{MODEL}/feedback"
    with httpx.Client(timeout=30) as client:
        rows = load_iris().data[:20]
        for i, row in enumerate(rows):
            predict(client, url, f"req-{i}", row, v2=bool(i % 2))
        bad = [
            ({"id": "req-1"}, "lacks target"),
            ({"id": "req-1", "target": {"class": 1}}, "must be a string, number or boolean"),
            ({"id": "req-1", "target": "dog"}, "'dog' is not a class the model predicts"),
            ({"id": 5, "target": "setosa"}, "non-empty string"),
            ([{"id": "req-1", "target": "setosa"}, {"id": "req-2", "target": 1.5}], "feedback[1].target"),
        ]
        for payload, words in bad:
            reply = client.post(feedback, json=payload, headers=AUTH)
            assert reply.status_code == 400 and words in reply.json()["error"], (payload, reply.text)
        reply = client.post(feedback, content=b"{not json", headers=AUTH)
        assert reply.status_code == 400 and "JSON" in reply.json()["error"]
        assert client.post(feedback, json={"id": "req-1", "target": "setosa"}).status_code == 401
        ok = [
            client.post(feedback, json={"id": "req-0", "target": "setosa"}, headers=AUTH),
            client.post(feedback, json=[{"id": f"req-{i}", "target": i % 3} for i in range(1, 15)], headers=AUTH),
            client.post(  # a binary-mode CloudEvent at the endpoint; its id names the prediction
                feedback,
                content=b'{"target": "virginica"}',
                headers={
                    **AUTH,
                    "ce-specversion": "1.0",
                    "ce-id": "req-15",
                    "ce-source": "test",
                    "ce-type": "io.infertap.feedback",
                    "content-type": "application/json",
                },
            ),
            client.post(  # a structured one at the ingest
                f"{url}/",
                content=orjson.dumps(
                    {
                        "specversion": "1.0",
                        "id": "x",
                        "source": "test",
                        "type": "io.infertap.feedback",
                        "data": [{"id": "req-16", "target": "setosa"}],
                    }
                ),
                headers={**AUTH, "content-type": "application/cloudevents+json"},
            ),
        ]
        assert [r.status_code for r in ok] == [202] * 4, [r.text for r in ok]
        assert [r.json()["accepted"] for r in ok] == [1, 14, 1, 1]
    labels = records(broker.bootstrap, f"{isvc}-feedback", 17)
    events = records(broker.bootstrap, f"{isvc}-events", 40)
    assert len(labels) == 17, "nothing of a refused batch was taken"
    where = {r.key.decode(): r.partition for r in events}
    assert {r.key.decode() for r in labels} == {f"req-{i}" for i in range(17)}
    assert {r.partition for r in labels} == {0, 1}  # both partitions used...
    assert all(where[r.key.decode()] == r.partition for r in labels)  # ...and each label beside its prediction
    first = next(r for r in labels if r.key == b"req-3")
    assert dict(first.headers)["ce_type"] == b"io.infertap.feedback"
    assert orjson.loads(first.value)["target"] == 0  # as sent; the worker reads 0 as setosa


def test_realised_accuracy_is_the_one_of_the_labels_sent(sidecar, worker, broker, kafka, tmp_path) -> None:
    url, isvc = sidecar()
    rng = np.random.default_rng(11)
    iris = load_iris()
    order = rng.permutation(len(iris.data))[:75]
    x, truth = iris.data[order], iris.target[order]
    ids = [f"req-{i}" for i in range(75)]
    labelled = [i for i in range(75) if not 30 <= i < 45]  # 60 of 75; the first and the last sent are labelled
    given = {i: CLASSES[truth[i]] if i % 5 else CLASSES[(truth[i] + 1) % 3] for i in labelled}  # every 5th label wrong
    delay = {i: 300.0 + 2 * i for i in labelled}  # five to eight minutes late
    early = labelled[-5:]  # their labels come before their predictions
    proc = worker(isvc, window=60)
    feedback = f"{url}/v1/models/{MODEL}/feedback"
    with httpx.Client(timeout=30) as client:
        # labels before their predictions: the time is what the client knows, send time plus the delay
        start = time.time()
        for i in early:
            client.post(feedback, json={"id": ids[i], "target": given[i], "time": start + 30 + delay[i]}, headers=AUTH)
        wait_metric(proc, "infertap_performance_pending", 5, kind="label")  # taken in, waiting for their predictions
        proba, sent = {}, {}
        for i in range(75):
            proba[i], sent[i] = predict(client, url, ids[i], x[i], v2=bool(i % 2))
        for i in early:  # the early ones' prediction times were later than assumed: the delay is what the worker sees
            delay[i] = start + 30 + delay[i] - sent[i]
        rest = [i for i in labelled if i not in early]
        by_http = [i for j, i in enumerate(rng.permutation(rest).tolist()) if j % 2]  # out of order
        by_file = sorted(set(rest) - set(by_http))
        reply = client.post(
            feedback,
            json=[{"id": ids[i], "target": given[i], "time": sent[i] + delay[i]} for i in by_http],
            headers=AUTH,
        )
        assert reply.status_code == 202, reply.text
        dupes = [{"id": ids[i], "target": CLASSES[(truth[i] + 2) % 3], "time": sent[i] + 999} for i in by_http[:5]]
        assert client.post(feedback, json=dupes, headers=AUTH).status_code == 202  # second labels: the first counts
        ghosts = [{"id": f"ghost-{k}", "target": "setosa", "time": start - 3 * 86400} for k in range(3)]
        assert client.post(feedback, json=ghosts, headers=AUTH).status_code == 202  # ids never seen
    table = tmp_path / "labels.parquet"
    pd.DataFrame(
        {
            "id": [ids[i] for i in by_file],
            "label": [given[i] for i in by_file],
            "at": [iso(sent[i] + delay[i]) for i in by_file],
        }
    ).to_parquet(table)
    backfill = _feedback_cli(
        [
            str(table),
            "--id-column",
            "id",
            "--target-column",
            "label",
            "--time-column",
            "at",
            "-s",
            isvc,
            "--bootstrap",
            broker.bootstrap,
        ]
    )
    assert backfill.returncode == 0 and f"sent {len(by_file)} feedback records to {isvc}-feedback" in backfill.stdout, (
        backfill.stderr
    )

    (window,) = windows(kafka, isvc, 1)
    predicted = {i: CLASSES[int(np.argmax(proba[i]))] for i in labelled}
    direct = sum(predicted[i] == given[i] for i in labelled) / len(labelled)
    assert window["n"] == 60 and sorted(window["event_ids"]) == sorted(ids[i] for i in labelled)
    assert window["accuracy"] == direct < 0.9
    y, p = [given[i] for i in labelled], [predicted[i] for i in labelled]
    assert window["f1_macro"] == pytest.approx(skm.f1_score(y, p, average="macro"))
    assert window["confusion_matrix"] == skm.confusion_matrix(y, p, labels=CLASSES).tolist()
    auc = skm.roc_auc_score([CLASSES.index(v) for v in y], np.array([proba[i] for i in labelled]), multi_class="ovr")
    assert window["roc_auc"] == pytest.approx(auc) and window["roc_auc_rows"] == 60
    assert window["labelled_share"] == pytest.approx(60 / 75)
    delays = window["label_delay_seconds"]
    assert delays["p50"] == pytest.approx(np.median([delay[i] for i in labelled]), abs=2.0)
    assert delays["min"] >= 290 and delays["max"] <= 500

    url_ = proc.metrics_url  # type: ignore[attr-defined]
    assert (
        metric(url_, "infertap_performance_metric", kind="realised", metric="accuracy", **{"class": "_all"}) == direct
    )
    assert metric(url_, "infertap_performance_labels_total", outcome="joined") == 60
    assert metric(url_, "infertap_performance_labels_total", outcome="duplicate") == 5
    assert metric(url_, "infertap_performance_labels_total", outcome="early") >= 5  # more when a poll met a label first
    assert metric(url_, "infertap_performance_evicted_total", kind="label", reason="age") == 3
    assert metric(url_, "infertap_performance_pending", kind="prediction") == 15  # the unlabelled ones wait
    dead = [e for e in kafka.read(f"{isvc}-deadletter", 3) if e.get_extension("reason") == "unknown_id"]
    assert sorted(e.get_extension("originalid") for e in dead) == ["ghost-0", "ghost-1", "ghost-2"]


def test_a_worker_killed_mid_join_loses_no_pair(sidecar, worker, broker, kafka, tmp_path) -> None:
    url, isvc = sidecar(partitions=1)
    state, group = tmp_path / "kill-state", unique("perf-kill")
    iris = load_iris()
    n = 160
    ids = [f"k-{i}" for i in range(n)]
    first = worker(isvc, window=40, state=state, group=group)
    feedback = f"{url}/v1/models/{MODEL}/feedback"
    with httpx.Client(timeout=30) as client:
        for i in range(n):
            predict(client, url, ids[i], iris.data[i % 150], v2=False)
        labels = [{"id": ids[i], "target": int(iris.target[i % 150])} for i in range(n)]
        assert client.post(feedback, json=labels[:100], headers=AUTH).status_code == 202
        seen = windows(kafka, isvc, 2)  # 80 pairs published, 20 joined and waiting in the state
        assert len(seen) >= 2
        time.sleep(1.0)  # the poll that joined the last 20 has made them durable
        first.kill()  # SIGKILL: no flush, no commit, no goodbye
        assert client.post(feedback, json=labels[100:], headers=AUTH).status_code == 202
    worker(isvc, window=40, state=state, group=group)
    published = windows(kafka, isvc, 4)
    covered = [ident for w in published for ident in w["event_ids"]]
    assert sorted(covered) == sorted(ids), "every labelled prediction in exactly one window"
    assert all(w["n"] == 40 for w in published)


def test_backfill_from_csv_and_what_it_refuses(broker, tmp_path: Path) -> None:
    isvc = unique("iris")
    good = tmp_path / "labels.csv"
    good.write_text("request,label,extra\n" + "".join(f"r-{i},{i % 3},x\n" for i in range(2500)))
    done = _feedback_cli(
        [
            str(good),
            "--id-column",
            "request",
            "--target-column",
            "label",
            "-s",
            isvc,
            "--bootstrap",
            broker.bootstrap,
            "--task",
            "classification",
        ]
    )
    assert done.returncode == 0, done.stderr
    got = records(broker.bootstrap, f"{isvc}-feedback", 2500)
    by_key = {r.key: r for r in got}
    assert len(got) == 2500 and set(by_key) == {f"r-{i}".encode() for i in range(2500)}
    assert orjson.loads(by_key[b"r-7"].value)["target"] == 1
    assert dict(by_key[b"r-7"].headers)["ce_subject"] == isvc.encode()

    other = unique("iris")
    bad = tmp_path / "bad.csv"
    bad.write_text("request,label\nr-1,setosa\nr-2,dog\n")
    refused = _feedback_cli(
        [
            str(bad),
            "--id-column",
            "request",
            "--target-column",
            "label",
            "-s",
            other,
            "--bootstrap",
            broker.bootstrap,
            "--task",
            "classification",
            "--class",
            "setosa",
            "--class",
            "versicolor",
        ]
    )
    assert refused.returncode == 2 and "row 2" in refused.stderr and "'dog' is not a class" in refused.stderr
    missing = _feedback_cli(
        [str(bad), "--id-column", "id", "--target-column", "label", "-s", other, "--bootstrap", broker.bootstrap]
    )
    assert missing.returncode == 2 and "no column 'id'" in missing.stderr
    assert records(broker.bootstrap, f"{other}-feedback", 1, timeout=3) == [], "a refused file sends nothing"


def _feedback_cli(args: list[str]):
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "infertap", "feedback", *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_topics_with_other_partition_counts_stop_the_worker_with_the_fix(spawn, broker, kafka, detector_yaml) -> None:
    isvc = unique("iris")
    kafka.create_topic(f"{isvc}-events", 2)
    kafka.create_topic(f"{isvc}-feedback", 1)
    spec = detector_yaml(
        f"{isvc}-perf",
        {
            "source": {"inferenceService": isvc, "bootstrap": broker.bootstrap},
            "detector": {"name": "RealisedPerformance", "params": {"task": "regression"}},
        },
    )
    child = spawn(
        [sys.executable, "-m", "infertap", "detect", str(spec), "--metrics-port", str(free_port())],
        env={"PYTHONPATH": str(ROOT)},
        name="performance",
    )
    assert child.proc.wait(60) == 1
    log = child.log.read_text()
    assert f"recreate {isvc}-feedback with 2 partition(s)" in log and "Traceback" not in log
