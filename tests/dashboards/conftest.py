"""The stack the dashboard tests scrape: real model server, logger sidecar, broker, explainer,
detector workers, a second logger sidecar in front of the scripted OpenAI upstream
(tests/sidecar/llm_upstream.py) for the LLM board, a labelled InferenceService with its
performance, CBPE and DataQuality workers for the model-quality board (quality_stack.py), and
the real Prometheus (Debian's `prometheus`), all on free ports."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import quality_stack
from stack_support import DASHBOARDS, PROMETHEUS, ROOT, Proc, Target, free_port, start_prometheus, wait_for

from infertap.stack.broker import create_topics
from infertap.stack.plan import runner_command

ISVC = "iris"
LLM_ISVC = "llm"
LLM_PRICES = {"echo": "0.15:0.60"}  # USD per 1M input:output tokens: the cost counter moves
# a redacted e-mail in every streamed chat (rule `email`)
LLM_MESSAGE = "please write to jane.doe@example.com about the order"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@dataclass
class Stack:
    prometheus: str
    sidecar: str
    predictor: str
    explainer: str | None = None
    llm: str | None = None  # the sidecar in front of the scripted OpenAI upstream
    detectors: list[str] = field(default_factory=list)  # names of the detector workers running
    started: float = 0.0
    procs: list[Proc] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    quality: quality_stack.QualityStack | None = None  # the labelled InferenceService and its workers

    def components(self) -> set[str]:
        """Metric families one may expect data for."""
        found = {
            "infertap_requests",
            "infertap_request",
            "infertap_batch",
            "infertap_model",
            "infertap_proxy",
            "infertap_tap",
            "infertap_logger",
        }
        if self.explainer:
            found.add("infertap_explainer")
        if self.detectors:
            found.add("infertap_detector")
        if "iris-adversarial" in self.detectors:
            found.add("infertap_detector_adversarial")
        if self.llm:
            found.add("infertap_gen")
        if self.quality:  # realised and estimated performance, data quality
            found |= {"infertap_performance", "infertap_data"}
        return found


def _runner(component: str, settings: dict, log: Path) -> Proc:
    """A component run as `infertap up` runs it: settings JSON in $INFERTAP_SETTINGS, not in argv."""
    argv, env = runner_command(component, settings)
    return Proc(argv, log, env=env)


def _text_explainers(
    models_dir: Path, tmp: Path, procs: list[Proc], targets: list[Target]
) -> dict[str, tuple[str, Proc]]:
    """The text panels' explainers: token attributions of the tiny sentiment classifier and prompt
    attributions of the tiny LLM (white box, over the folders `make models` builds); {kind: (URL, process)}."""
    urls = {}
    for kind, model, folder in (
        ("TextIntegratedGradients", "sentiment", "tiny-classifier"),
        ("LLMFeatureAblation", "tiny-llm", "tiny-llm"),
    ):
        if not (models_dir / folder / "config.json").exists():
            continue
        port = free_port()
        args = ["--name", model, "--inference-service", ISVC, "--explainer-type", kind, "--http-port", str(port)]
        args += ["--token-metric-top-k", "20"]  # off by default (labels carry request text); the panel reads it
        proc = Proc(
            [sys.executable, "-m", "infertap.explainers", *args, "--storage-uri", str(models_dir / folder)],
            tmp / f"{kind}.log",
        )
        procs.append(proc)
        urls[kind] = (f"http://127.0.0.1:{port}", proc)
        targets.append(Target(f"explainer-{kind}", f"127.0.0.1:{port}"))
    return urls


def _explain_texts(client: httpx.Client, urls: dict[str, str]) -> None:
    """One text explained and one completion attributed (the token and role series move)."""
    if "TextIntegratedGradients" in urls:
        ok = client.post(
            f"{urls['TextIntegratedGradients']}/v1/models/sentiment:explain", json={"instances": ["what a superb song"]}
        )
        assert ok.status_code == 200, ok.text
    if "LLMFeatureAblation" in urls:
        chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why do trains run?"}]
        body = {"messages": chat, "completion": "on rails"}
        ok = client.post(f"{urls['LLMFeatureAblation']}/v1/models/tiny-llm:explain", json=body)
        assert ok.status_code == 200, ok.text


def _available(names: tuple[str, ...]) -> str | None:
    """The first backend name the detectors' registry can create (None when it has none of them)."""
    try:
        from infertap.detectors.backends.registry import create_backend
    except ImportError:
        return None
    for name in names:
        try:
            create_backend(name, FEATURES, {})
            return name
        except Exception:  # noqa: BLE001 - unknown name or missing optional library: try the next
            continue
    return None


def _detector_specs(broker: str, reference: Path, tmp: Path) -> list[dict]:
    """Worker settings of the detectors to run, from the backends that exist in this checkout."""
    features = [{"name": n} for n in FEATURES]
    base = {
        "inference_service": ISVC,
        "bootstrap": broker,
        "features": features,
        "reference": str(reference),
        "window": {"size": 40},
        "events": "request",
    }
    specs = []
    drift = _available(("KSDrift", "TabularDrift", "ScipyKS", "ks", "ks_drift"))
    outlier = _available(("IForest", "SklearnIForest", "IsolationForest", "isolation_forest", "iforest"))
    if drift:
        specs.append({**base, "name": "iris-drift", "detector": drift})
    if outlier:
        specs.append({**base, "name": "iris-outliers", "detector": outlier})
    specs.append(
        {**base, "name": "iris-adversarial", "detector": "tests.dashboards.zscore_adversarial:ZScoreAdversarial"}
    )
    return specs


def _llm_round(llm: str) -> None:
    """OpenAI calls with the official client: streamed chats (usage reported, a redacted e-mail;
    tool calls), a non-streamed chat, a streamed text completion (tokens estimated) and a
    request the upstream rejects (400)."""
    import openai

    client = openai.OpenAI(base_url=f"{llm}/openai/v1", api_key="unused", max_retries=0, timeout=30)
    messages: list[Any] = [{"role": "user", "content": LLM_MESSAGE}]
    stream = client.chat.completions.create(
        model="echo", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == LLM_MESSAGE  # the stream reached the client unchanged (redaction is for the logs)
    for _ in client.chat.completions.create(model="tools", messages=messages, stream=True):
        pass
    hello: list[Any] = [{"role": "user", "content": "hello there"}]
    answer = client.chat.completions.create(model="echo", messages=hello)
    assert answer.choices[0].message.content == "hello there"
    completion = client.completions.create(model="echo", prompt="one two three four", stream=True)
    assert "".join(c.choices[0].text for c in completion if c.choices) == "one two three four"
    try:
        client.chat.completions.create(model="reject", messages=messages)
    except openai.BadRequestError:
        pass
    else:
        raise AssertionError("the scripted upstream accepted model 'reject'")


def _traffic(
    sidecar: str, explainer: str | None, llm: str | None = None, rounds: int = 3, texts: dict[str, str] | None = None
) -> None:
    """Reference-like rows, then shifted rows with outliers; bad requests and skipped ones too;
    OpenAI calls through the LLM sidecar."""
    rng = np.random.default_rng(0)
    with httpx.Client(timeout=30) as client:
        for r in range(rounds):
            if llm:
                _llm_round(llm)
            shift = 0.0 if r == 0 else 3.0
            for _ in range(40):
                row = (rng.normal([5.8, 3.0, 3.8, 1.2], [0.8, 0.4, 1.7, 0.7]) + [0, 0, shift, shift]).tolist()
                assert client.post(f"{sidecar}/v1/models/{ISVC}:predict", json={"instances": [row]}).status_code == 200
            body = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2] * 2}]}
            assert client.post(f"{sidecar}/v2/models/{ISVC}/infer", json=body).status_code == 200
            digits = {"inputs": [{"name": "input", "shape": [2, 64], "datatype": "FP32", "data": [0.5] * 128}]}
            assert client.post(f"{sidecar}/v2/models/digits/infer", json=digits).status_code == 200
            # errors for the error panels: a malformed body (4xx) on the real model
            assert client.post(f"{sidecar}/v1/models/{ISVC}:predict", json={"instances": "oops"}).status_code >= 400
            # a request the tap does not log (as the explainer's own calls)
            client.post(
                f"{sidecar}/v1/models/{ISVC}:predict",
                json={"instances": [[5.0, 3.0, 1.5, 0.2]]},
                headers={"infertap-skip-logging": "true"},
            )
            if explainer:
                ok = client.post(f"{explainer}/v1/models/{ISVC}:explain", json={"instances": [[6.1, 2.8, 4.7, 1.2]]})
                assert ok.status_code == 200, ok.text
                # rows of the wrong width fail inside the explanation: counted by reason
                bad = client.post(f"{explainer}/v1/models/{ISVC}:explain", json={"instances": [[1.0, 2.0]]})
                assert bad.status_code >= 400, bad.text
            _explain_texts(client, texts or {})
            time.sleep(2)


@pytest.fixture(scope="module")
def stack(broker, models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if PROMETHEUS is None:
        pytest.skip("prometheus is not installed (make test installs Debian's package)")
    tmp = tmp_path_factory.mktemp("stack")
    procs: list[Proc] = []
    try:
        model = models_dir / "sklearn-iris"
        pport, sport = free_port(), free_port()
        # a pytorch model beside iris: only runtimes with dynamic batching report batch sizes
        predictor = _runner(
            "serving",
            {
                "http_port": pport,
                "inference_service": ISVC,
                "models": [
                    {"name": ISVC, "format": "sklearn", "uri": str(model)},
                    {"name": "digits", "format": "pytorch", "uri": str(models_dir / "torch-digits"), "device": "cpu"},
                ],
            },
            tmp / "predictor.log",
        )
        procs.append(predictor)
        sidecar = _runner(
            "logger",
            {
                "port": sport,
                "component_port": pport,
                "inference_service": ISVC,
                "log_url": [f"kafka://{broker.bootstrap}/{ISVC}-events"],
                "spool_dir": str(tmp / "spool"),
            },
            tmp / "sidecar.log",
        )
        procs.append(sidecar)
        targets = [
            Target("predictor", f"127.0.0.1:{pport}"),
            Target("logger", f"127.0.0.1:{sport}", "/infertap/metrics"),
        ]
        notes = []

        llm_url, llm_sidecar, upstream = None, None, None
        uport, lport = free_port(), free_port()
        if importlib.util.find_spec("openai") is not None:
            upstream = Proc(
                [sys.executable, str(ROOT / "tests" / "sidecar" / "llm_upstream.py"), "--port", str(uport)],
                tmp / "llm-upstream.log",
            )
            procs.append(upstream)
            llm_sidecar = _runner(
                "logger",
                {
                    "port": lport,
                    "component_port": uport,
                    "inference_service": LLM_ISVC,
                    "log_url": [f"kafka://{broker.bootstrap}/{LLM_ISVC}-events"],
                    "spool_dir": str(tmp / "llm-spool"),
                    "llm_prices": LLM_PRICES,
                },
                tmp / "llm-sidecar.log",
            )
            procs.append(llm_sidecar)
            llm_url = f"http://127.0.0.1:{lport}"
            targets.append(Target("llm-logger", f"127.0.0.1:{lport}", "/infertap/metrics"))
        else:
            notes.append("the openai client is not installed: LLM panels not checked")

        explainer_url, text_explainers = None, {}
        if importlib.util.find_spec("infertap.explainers.server") is not None:
            eport = free_port()
            explainer = Proc(
                [
                    sys.executable,
                    "-m",
                    "infertap.explainers",
                    "--name",
                    ISVC,
                    "--inference-service",
                    ISVC,
                    "--explainer-type",
                    "KernelShap",
                    "--http-port",
                    str(eport),
                    "--predictor-url",
                    f"http://127.0.0.1:{sport}",
                    "--protocol",
                    "v1",
                    "--background",
                    str(model / "reference.npy"),
                    "--background-size",
                    "20",
                    "--nsamples",
                    "64",
                    "--feature-names",
                    ",".join(FEATURES),
                ],
                tmp / "explainer.log",
            )
            procs.append(explainer)
            explainer_url = f"http://127.0.0.1:{eport}"
            targets.append(Target("explainer", f"127.0.0.1:{eport}"))
            text_explainers = _text_explainers(models_dir, tmp, procs, targets)
        else:
            notes.append("infertap.explainers.server missing: explanation panels not checked")

        # the workers' topic before they subscribe: a consumer subscribed to a topic that does not exist yet
        # may not see it for minutes (librdkafka's metadata refresh), and the sidecar makes it only with its
        # first event
        create_topics(broker.bootstrap, [f"{ISVC}-events"])
        detectors = []
        for spec in _detector_specs(broker.bootstrap, model / "reference.npy", tmp):
            spec["metrics_port"] = mport = free_port()
            proc = Proc([sys.executable, "-m", "infertap.detectors", json.dumps(spec)], tmp / f"{spec['name']}.log")
            procs.append(proc)
            detectors.append((spec["name"], proc, mport))
            targets.append(Target(f"detector-{spec['name']}", f"127.0.0.1:{mport}"))
        if not detectors:
            notes.append(
                "no drift/outlier backend in infertap.detectors.backends.registry: detector panels not checked"
            )

        quality = quality_stack.start(broker.bootstrap, models_dir, pport, tmp, procs, targets)

        predictor.wait_http(f"http://127.0.0.1:{pport}/v2/health/ready")
        quality_stack.wait_ready(quality)
        sidecar.wait_http(f"http://127.0.0.1:{sport}/infertap/metrics")
        if upstream and llm_sidecar:
            upstream.wait_http(f"http://127.0.0.1:{uport}/v2/health/ready")
            llm_sidecar.wait_http(f"{llm_url}/infertap/metrics")
        if explainer_url:
            explainer.wait_http(f"{explainer_url}/v2/health/ready", timeout=180)
            for url, proc in text_explainers.values():
                proc.wait_http(f"{url}/v2/health/ready", timeout=180)
        for _, proc, mport in detectors:
            proc.wait_http(f"http://127.0.0.1:{mport}/metrics", timeout=180)

        prom, prom_url = start_prometheus(tmp / "prometheus", targets, [DASHBOARDS / "prometheus" / "alerts.yml"])
        procs.append(prom)
        started = time.time()
        _traffic(
            f"http://127.0.0.1:{sport}",
            explainer_url,
            llm_url,
            texts={k: url for k, (url, _) in text_explainers.items()},
        )
        quality_stack.traffic(quality)
        stack = Stack(
            prom_url,
            f"http://127.0.0.1:{sport}",
            f"http://127.0.0.1:{pport}",
            explainer_url,
            llm_url,
            [name for name, _, _ in detectors],
            started,
            procs,
            notes,
            quality,
        )
        # everything scraped at least once after the traffic: the last counters are in
        wait_for(prom_url, 'sum(infertap_logger_events_total{outcome="sent"}) > 0')
        if llm_url:  # the last round's rejected call scraped (one a round): every LLM counter is in
            wait_for(prom_url, 'sum(infertap_gen_ai_server_requests_total{code="400"}) >= 3')
        if stack.detectors:  # every iris worker judged a window (each one's `detector` label is its backend)
            judged = f'count(infertap_detector_windows_evaluated_total{{inference_service="{ISVC}"}} > 0)'
            wait_for(prom_url, f"{judged} >= {len(stack.detectors)}", timeout=120)
        for expr in quality_stack.READY:  # every window, label and violation of the labelled service is in
            wait_for(prom_url, expr, timeout=120)
        time.sleep(3 * 1)
        yield stack
    finally:
        for proc in reversed(procs):
            proc.stop()
