"""`infertap up` with a text or LLM explainer beside a huggingface predictor: the plan, and the whole chain
for real (`:explain` through the sidecar, logged texts explained on the stream, the report's highlighted text)."""

from __future__ import annotations

import json
import signal
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from infertap.stack.plan import PlanOptions, make_plan
from infertap.stack.specs import load_files
from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.timeout(400)


def _plan(example: str):
    docs = load_files([ROOT / "examples" / example]).documents
    return make_plan(docs, PlanOptions(start_broker=False, explain_stream_port=0))


@pytest.mark.fast
@pytest.mark.parametrize(
    "example, kind, folder",
    [
        ("hf-tiny-classifier-explainer.yaml", "TextIntegratedGradients", "tiny-classifier"),
        ("hf-tiny-llm-explainer.yaml", "LLMFeatureAblation", "tiny-llm"),
    ],
)
def test_the_explainer_reads_the_predictors_model_folder(example, kind, folder, monkeypatch):
    monkeypatch.chdir(ROOT)
    plan = _plan(example)
    [explainer] = plan.by_role("explainer")
    s = explainer.settings
    assert (s.explainer_type, s.model_format) == (kind, "huggingface")
    assert Path(s.storage_uri.removeprefix("file://")).resolve() == (ROOT / "models" / folder).resolve()
    if kind.startswith("LLM"):
        assert s.params == {"segments": "words"} and s.predictor_model == "llama3" and s.max_target_tokens == 32
    else:
        [stream] = plan.by_role("explain-stream")  # the annotation explains every logged text
        assert "sentiment-explanations" in stream.note


def test_up_explains_texts_at_the_sidecar_and_on_the_stream_into_the_report(spawn, tmp_path, models_dir):
    broker_port = free_port()
    isvc = "sentiment"
    text = (ROOT / "examples" / "hf-tiny-classifier-explainer.yaml").read_text()
    text = text.replace("file://./models/tiny-classifier", f"file://{models_dir / 'tiny-classifier'}")
    text = text.replace("kafka://localhost:9092/", f"kafka://127.0.0.1:{broker_port}/")
    spec = tmp_path / "sentiment.yaml"
    spec.write_text(text)
    logger_port = free_port()
    up = spawn(
        [
            sys.executable,
            "-m",
            "infertap",
            "up",
            str(spec),
            "--log-dir",
            str(tmp_path / "logs"),
            "--predictor-port",
            "0",
            "--logger-port",
            str(logger_port),
            "--explainer-port",
            "0",
            "--ready-timeout",
            "300",
        ],
        name="infertap-up",
    )
    deadline, state = time.monotonic() + 360, []
    while time.monotonic() < deadline:
        assert up.proc.poll() is None, up.tail(80)
        state_file = tmp_path / "logs" / "processes.json"
        if state_file.exists() and "Ctrl-C stops everything" in up.log.read_text():
            state = json.loads(state_file.read_text())
            break
        time.sleep(0.5)
    assert {s["role"] for s in state} == {"broker", "predictor", "logger", "explainer", "explain-stream"}, up.tail(80)
    sidecar = f"http://127.0.0.1:{logger_port}"
    r = httpx.post(f"{sidecar}/v1/models/{isvc}:explain", json={"instances": ["what a superb poem"]}, timeout=120)
    assert r.status_code == 200, r.text
    [e] = r.json()["explanations"]
    assert e["method"] == "LayerIntegratedGradients" and e["target_label"] == "positive"
    assert e["tokens"][max(range(len(e["tokens"])), key=lambda i: abs(e["attributions"][i]))] == "superb"
    # a logged prediction is explained by the stream worker into <isvc>-explanations
    predict = httpx.post(
        f"{sidecar}/v1/models/{isvc}:predict", json={"instances": ["the <b>film</b> was dreadful"]}, timeout=60
    )
    assert predict.status_code == 200 and predict.json()["predictions"] == [0], predict.text
    out, page = tmp_path / "report.html", None
    for _ in range(60):
        done = _report(isvc, broker_port, out)
        if done.returncode == 0 and "texts explained 1" in done.stdout:
            page = out.read_text()
            break
        time.sleep(2)
    assert page is not None, (done.stdout, done.stderr, up.tail(60))
    spans = Highlighted()
    spans.feed(page)
    assert spans.text == "the <b>film</b> was dreadful" and "b" not in spans.tags  # escaped, shown as written
    assert "dreadful" in spans.strongest
    up.proc.send_signal(signal.SIGINT)
    up.proc.wait(90)
    assert up.proc.returncode == 0, up.tail(40)


def _report(isvc: str, broker_port: int, out: Path):
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "infertap", "report", isvc, "--bootstrap", f"127.0.0.1:{broker_port}", "-o", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


class Highlighted(HTMLParser):
    """The text of the page's first explained text, the tags inside it, and its most strongly coloured token."""

    def __init__(self):
        super().__init__()
        self.text, self.tags, self.strongest = "", [], ""
        self._inside, self._alpha, self._best = False, None, -1.0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div" and attrs.get("class") == "text" and not self.text:
            self._inside = True
        elif self._inside and tag == "span":
            style = attrs.get("style", "")
            self._alpha = float(style.rsplit(",", 1)[1].rstrip(")")) if "rgba" in style else None
        elif self._inside:
            self.tags.append(tag)

    def handle_endtag(self, tag):
        if tag == "div":
            self._inside = False
        elif tag == "span":
            self._alpha = None

    def handle_data(self, data):
        if self._inside:
            self.text += data
            if self._alpha is not None and self._alpha > self._best:
                self._best, self.strongest = self._alpha, data
