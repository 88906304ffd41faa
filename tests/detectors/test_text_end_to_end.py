"""Text on the stream, end to end with real processes: the official `openai` client through the real
logger sidecar (in front of the scripted OpenAI upstream, tests/sidecar/llm_upstream.py), the
embedded broker, `infertap fit` of two Detector documents from corpora the test builds, and two
real detector workers (`infertap detect`) reading the events topic:

- prompts: a TextSuite (MMD, domain classifier, descriptors, out-of-distribution) on the last
  user message of each chat request; windows of 100 requests;
- answers: LLMResponseSignals on the logged (reassembled) answers; windows of 100 responses.

Traffic, 100 calls a phase: held-back reference prompts (no drift, nothing flagged but the odd
one), shifted prompts (drift, with the length and vocabulary descriptors named), reference
prompts with planted ones (other languages, code, gibberish: flagged as outliers, with their
text as logged, the e-mail in one of them redacted), then calls that break the answers
(truncated by the token limit, refused, failed): the response signals move.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from infertap.detectors.backends.registry import pickles_in
from tests.conftest import ROOT, Child, free_port, unique
from tests.detectors.conftest import KafkaTools, body
from tests.detectors.text_corpus import PLANTED, REFUSAL, answer, reference_prompts, shifted_prompts

openai = pytest.importorskip("openai")

UPSTREAM = ROOT / "tests" / "sidecar" / "llm_upstream.py"
WINDOW = 100
EMAIL = "jane.doe@example.com"
PLANTED_PROMPTS = [*PLANTED, f"Mein Passwort funktioniert nicht mehr, bitte schreiben Sie mir an {EMAIL}"]


def document(name: str, spec: dict) -> dict:
    return {"apiVersion": "infertap.dev/v1alpha1", "kind": "Detector", "metadata": {"name": name}, "spec": spec}


def infertap(*args: str, log: Path) -> Child:
    return Child([sys.executable, "-m", "infertap", *args], log, env={"PYTHONPATH": str(ROOT)})


class Stack:
    """Upstream, sidecar, fitted detectors and their workers; `detections` once the traffic went through."""

    def __init__(self, folder: Path, bootstrap: str, models: Path):
        self.folder, self.bootstrap = folder, bootstrap
        self.topic = unique("text-events")
        self.children: list[Child] = []
        self.kafka = KafkaTools(bootstrap)
        self.kafka.create_topic(self.topic, 1)  # one partition: windows follow the order of the calls
        self.model = models / "all-minilm-l6-v2"

    def start(self, args: list[str], name: str, ready: str | None = None, timeout: float = 60.0) -> Child:
        child = Child(args, self.folder / f"{name}.log", env={"PYTHONPATH": str(ROOT)})
        self.children.append(child)
        if ready:
            child.wait_http(ready, timeout=timeout)
        return child

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.kafka.close()


@pytest.fixture(scope="module")
def stack(broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("text-e2e")
    s = Stack(folder, broker.bootstrap, ROOT / "models")
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def fitted(stack: Stack) -> dict[str, str]:
    """Both Detector documents, fitted by `infertap fit` from corpora of their own; the fit's output."""
    folder = stack.folder
    (folder / "prompts.txt").write_text("\n".join(reference_prompts(300, seed=0)) + "\n")
    with (folder / "answers.jsonl").open("w") as fh:
        for prompt in reference_prompts(300, seed=1):
            fh.write(json.dumps(answer(prompt)) + "\n")
    source = {"topic": stack.topic, "bootstrap": stack.bootstrap, "inferenceService": "llm"}
    outputs = {"topic": f"{stack.topic}-detections", "deadLetterTopic": f"{stack.topic}-dl"}
    docs = {
        "prompts": document(
            "prompts",
            {
                "source": {**source, "events": "request", "consumerGroup": unique("prompts")},
                "features": [{"name": "prompt", "type": "text", "messages": "last_user"}],
                "detector": {
                    "name": "TextSuite",
                    "params": {"model": str(stack.model), "device": "cpu"},
                    "savedDetector": "prompts-detector",
                },
                "window": {"size": WINDOW},
                "outputs": outputs,
            },
        ),
        "answers": document(
            "answers",
            {
                "source": {**source, "events": "response", "consumerGroup": unique("answers")},
                "detector": {"name": "LLMResponseSignals", "savedDetector": "answers-detector"},
                "window": {"size": WINDOW},
                "outputs": outputs,
            },
        ),
    }
    out = {}
    for name, doc in docs.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        corpus = folder / ("prompts.txt" if name == "prompts" else "answers.jsonl")
        fit = infertap("fit", str(folder / f"{name}.yaml"), "--reference", str(corpus), log=folder / f"fit-{name}.log")
        assert fit.proc.wait(300) == 0, fit.tail()
        out[name] = fit.log.read_text()
        saved = folder / f"{name}-detector"
        assert (saved / "infertap-detector.json").is_file() and not pickles_in(saved)
    return out


def chat(client, prompt: str, model: str = "echo", **kw):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}], **kw)


@pytest.fixture(scope="module")
def detections(stack: Stack, fitted) -> dict[str, list[dict]]:
    """The traffic of the four phases, and the detections of both workers: {detector: [bodies in order]}."""
    port = free_port()
    stack.start(
        [sys.executable, str(UPSTREAM), "--port", str(port)], "upstream", f"http://127.0.0.1:{port}/v2/health/ready"
    )
    sidecar_port = free_port()
    log_url = f"kafka://{stack.bootstrap}/{stack.topic}"
    args = [
        "--port",
        str(sidecar_port),
        "--component-port",
        str(port),
        "--inference-service",
        "llm",
        "--log-url",
        log_url,
    ]
    stack.start(
        [sys.executable, "-m", "infertap.sidecar", *args],
        "sidecar",
        f"http://127.0.0.1:{sidecar_port}/infertap/metrics",
    )
    for name in ("prompts", "answers"):
        metrics = free_port()
        spec = str(stack.folder / f"{name}.yaml")
        argv = [sys.executable, "-m", "infertap", "detect", spec, "--metrics-port", str(metrics)]
        stack.start(argv, f"detect-{name}", f"http://127.0.0.1:{metrics}/metrics", timeout=120)

    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{sidecar_port}/openai/v1", api_key="-", max_retries=0, timeout=30
    )
    held_back = reference_prompts(3 * WINDOW, seed=7)
    streamed = {"stream": True, "stream_options": {"include_usage": True}}
    for i, prompt in enumerate(held_back[:WINDOW]):  # phase 1: like the reference, every other one streamed
        chat(client, prompt, **(streamed if i % 2 else {}))
    for prompt in shifted_prompts(WINDOW, seed=3):  # phase 2: other topics, longer
        chat(client, prompt)
    mixed = held_back[WINDOW : 2 * WINDOW - len(PLANTED_PROMPTS)] + PLANTED_PROMPTS  # phase 3: planted last
    for prompt in mixed:
        chat(client, prompt)
    for i, prompt in enumerate(held_back[2 * WINDOW :]):  # phase 4: answers cut, refused, failed
        if i % 10 < 3:
            chat(client, prompt, model="cadence", extra_query={"n": "5", "interval": "0"}, stream=True)
        elif i % 10 < 5:
            chat(client, REFUSAL)
        elif i % 10 < 7:
            with pytest.raises(openai.BadRequestError):
                chat(client, prompt, model="reject")
        else:
            chat(client, prompt)

    events = stack.kafka.read(f"{stack.topic}-detections", 4 * 2 + 4, timeout=180)
    out: dict[str, list[dict]] = {"prompts": [], "prompts/outliers": [], "answers": []}
    for event in events:
        name = event.get_extension("detector")
        kind = "/outliers" if event.get_type() == "io.infertap.detection.outlier" else ""
        out[f"{name}{kind}"].append(body(event))
    assert [len(v) for v in out.values()] == [4, 4, 4], {k: len(v) for k, v in out.items()}
    return out


def moved(window: dict) -> list[str]:
    return [f["name"] for f in window["features"] if f["is_drift"]]


def test_fit_reports_the_held_out_check(fitted):
    """(The progress of embedding the reference is checked in-process, test_text_backends: rich shows no
    live progress to a file.)"""
    assert "TextSuite): fitted on 300 rows" in fitted["prompts"], fitted["prompts"]
    summary = json.loads(fitted["prompts"].split("on its reference: ", 1)[1].splitlines()[0])
    assert summary["TextMMDDrift"]["drift_on_held_out"] is False
    assert 0 <= summary["TextOOD"]["flagged_share_of_held_out"] <= 0.05
    assert "LLMResponseSignals): fitted on 300 rows" in fitted["answers"]


def test_no_drift_on_held_back_reference_prompts(detections):
    first = detections["prompts"][0]
    assert first["n"] == WINDOW and first["detector"] == "TextSuite"
    assert first["is_drift"] is False, first["raw"]["moved"]
    assert set(first["raw"]["members"]) == {"TextMMDDrift", "TextClassifierDrift", "TextDescriptorDrift"}
    outliers = detections["prompts/outliers"][0]
    assert outliers["detector"] == "TextOOD" and sum(outliers["is_outlier"]) <= 3
    answers = detections["answers"][0]
    assert answers["is_drift"] is False, moved(answers)


def test_drift_on_shifted_prompts_names_the_descriptors_that_moved(detections):
    second = detections["prompts"][1]
    assert second["is_drift"] is True
    names = moved(second)
    assert {"embedding_mmd", "domain_classifier"} <= set(names)
    assert {"chars", "tokens", "words", "oov_share"} <= set(names), names
    assert not {"script", "non_ascii_share", "redactions"} & set(names), names  # what did not change is not named
    chars = next(f for f in second["features"] if f["name"] == "chars")
    assert chars["value"] > 2 * chars["reference"]
    examples = second["raw"]["members"]["TextClassifierDrift"]["examples"]
    hobbies = ("baking", "hiking", "guitar", "chess", "painting", "birdwatching")
    assert all(any(h in e["text"] for h in hobbies) for e in examples["current"])
    assert not any(any(h in e["text"] for h in hobbies) for e in examples["reference"])


def test_planted_prompts_are_flagged_as_outliers_with_their_redacted_text(detections):
    window = detections["prompts/outliers"][2]
    flags = window["is_outlier"]
    planted = range(WINDOW - len(PLANTED_PROMPTS), WINDOW)
    assert all(flags[i] for i in planted), [round(window["instance_scores"][i], 3) for i in planted]
    assert sum(flags) - len(planted) <= 3, "few false alarms among the held-back prompts"
    texts = [f["text"] for f in window["raw"]["flagged"]]
    assert "Почему мой заказ до сих пор не доставлен, хотя прошло уже две недели?" in texts
    german = [t for t in texts if t.startswith("Mein Passwort")]
    assert german and "[REDACTED:email]" in german[0] and EMAIL not in json.dumps(detections)
    assert all(f["score"] > window["threshold"] for f in window["raw"]["flagged"])


def test_response_signals_move_on_truncated_refused_and_failed_answers(detections):
    fourth = detections["answers"][3]
    names = moved(fourth)
    assert {"finish_length_share", "refusal_share", "error_share"} <= set(names), names
    assert "empty_share" not in names
    values = {f["name"]: f["value"] for f in fourth["features"]}
    assert values["error_share"] == pytest.approx(0.2)
    assert values["finish_length_share"] == pytest.approx(30 / 80) and values["refusal_share"] == pytest.approx(20 / 80)
    assert REFUSAL in fourth["raw"]["examples"]["refusal_share"]
    assert detections["answers"][1]["is_drift"] is True and "output_chars" in moved(detections["answers"][1])
