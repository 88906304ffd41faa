"""The explainer's own predictor calls pass the real logger sidecar unlogged; normal predicts are logged."""

from __future__ import annotations

import time

import httpx
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from infertap.logger.events import REQUEST_TYPE
from tests.explainers.conftest import explain


def events(sink) -> list[CloudEvent]:
    if not sink.exists():
        return []
    return [JSONFormat().read(CloudEvent, ln) for ln in sink.read_bytes().splitlines() if ln.strip()]


def wait_events(sink, n: int, timeout: float = 30.0) -> list[CloudEvent]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = events(sink)
        if len(found) >= n:
            return found
        time.sleep(0.2)
    return events(sink)


def test_explainer_calls_are_not_logged_but_predicts_are(logged_predictor, serve_explainer, models_dir, reference):
    sidecar, sink = logged_predictor
    before = len(events(sink))
    url = serve_explainer(
        name="sklearn-iris",
        explainer_type="KernelShap",
        predictor_url=sidecar,
        protocol="v1",
        background=str(models_dir / "sklearn-iris" / "reference.npy"),
        background_size=20,
    )
    r = explain(url, "sklearn-iris", reference("sklearn-iris")[:3])
    assert r.status_code == 200, r.text
    text = httpx.get(f"{url}/metrics").text
    assert "infertap_explainer_predictor_requests_total" in text  # it did call the predictor, through the sidecar
    skipped = httpx.get(f"{sidecar}/infertap/metrics").text
    assert "skip_header" in skipped  # the sidecar saw and skipped them

    r = httpx.post(
        f"{sidecar}/v1/models/sklearn-iris:predict",
        json={"instances": [[5.1, 3.5, 1.4, 0.2]]},
        headers={"ce-id": "normal-predict-1"},
    )
    assert r.status_code == 200
    found = wait_events(sink, before + 2)
    new = found[before:]
    # Exactly the normal predict's request and response: none of the explainer's perturbation calls.
    assert [e.get_id() for e in new] == ["normal-predict-1", "normal-predict-1"], [e.get_id() for e in new]
    assert new[0].get_type() == REQUEST_TYPE
    time.sleep(1.0)  # nothing else arrives late
    assert len(events(sink)) == before + 2
