"""`infertap report`'s text explanations: tokens and prompt segments highlighted by score, escaped, newest
last, read back from the real broker and drawn by headless Chromium."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from infertap.explainers.explanation import CompletionExplanation, PromptSegment, TextExplanation
from infertap.stack.report import MAX_TEXTS, from_events, render_html

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
HOSTILE = "the <script>alert('x')</script> film & its plot were great"


def text_event(text: str, scores: dict[str, float], minute: int = 0) -> tuple[dict, dict]:
    """An explanation event of a classifier's text: one token per word, scored by `scores` (else 0.01)."""
    offsets, position = [], 0
    for word in text.split(" "):
        start = text.index(word, position)
        offsets.append((start, start + len(word)))
        position = start + len(word)
    tokens = [text[a:b] for a, b in offsets]
    e = TextExplanation(
        method="LayerIntegratedGradients",
        text=text,
        tokens=tokens,
        offsets=offsets,
        attributions=[scores.get(t, 0.01) for t in tokens],
        target=1,
        target_label="positive",
        prediction=1.2,
        base_value=0.1,
        output_space="logit",
        convergence_delta=0.0,
    )
    body = {
        "model_name": "sentiment",
        "explainer": "TextIntegratedGradients",
        "explanations": [e.model_dump(mode="json")],
    }
    return {"type": "io.infertap.explanation", "time": T0 + timedelta(minutes=minute)}, body


def llm_event() -> tuple[dict, dict]:
    segments = [
        PromptSegment(text="Be brief. ", role="system", message=0, start=0, attribution=-0.4),
        PromptSegment(text="Why do trains run?", role="user", message=1, start=0, attribution=1.5),
    ]
    e = CompletionExplanation(
        method="FeatureAblation",
        segmentation="sentences",
        segments=segments,
        completion="On rails & <time>.",
        completion_tokens=["On", " rails"],
        generated=False,
        target_log_prob=-3.2,
        prompt_tokens=20,
    )
    body = {"model_name": "llm", "explainer": "LLMFeatureAblation", "explanations": [e.model_dump(mode="json")]}
    return {"type": "io.infertap.explanation", "time": T0 + timedelta(minutes=30)}, body


class Spans(HTMLParser):
    """The highlighted spans (text, style, title) of the texts section, its plain text, and every tag seen."""

    def __init__(self):
        super().__init__()
        self.spans: list[dict] = []
        self.tags: list[str] = []
        self.blocks: list[str] = []
        self._span: dict | None = None
        self._depth = 0  # inside a div.text

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "div" and attrs.get("class") == "text":
            self._depth = 1
            self.blocks.append("")
        elif self._depth and tag == "div":
            self._depth += 1
        if tag == "span" and attrs.get("class") == "tok" and self._depth:
            self._span = {"text": "", "style": attrs.get("style", ""), "title": attrs.get("title", "")}

    def handle_endtag(self, tag):
        if tag == "span" and self._span is not None:
            self.spans.append(self._span)
            self._span = None
        if tag == "div" and self._depth:
            self._depth -= 1

    def handle_data(self, data):
        if self._span is not None:
            self._span["text"] += data
        if self._depth:
            self.blocks[-1] += data


@pytest.mark.fast
def test_tokens_are_highlighted_by_score_and_escaped():
    data = from_events("sentiment", [], [text_event(HOSTILE, {"great": 0.9, "plot": -0.3})])
    page = Spans()
    page.feed(render_html(data))
    assert "script" not in page.tags  # the text's markup is shown, never run
    assert page.blocks == [HOSTILE]  # the text as written, gaps included
    by_text = {s["text"]: s for s in page.spans}
    assert set(by_text) == set(HOSTILE.split(" "))
    assert "rgba(27,127,59,0.80)" in by_text["great"]["style"] and by_text["great"]["title"] == "+0.9"
    assert "rgba(176,0,32," in by_text["plot"]["style"] and by_text["plot"]["title"] == "-0.3"
    assert "rgba(27,127,59,0.11)" in by_text["film"]["style"]  # 0.01 of a top of 0.9: faint
    assert data.summary["texts explained"] == 1


@pytest.mark.fast
def test_llm_prompts_show_roles_segments_and_the_completion():
    data = from_events("llm", [], [llm_event()])
    html_page = render_html(data)
    page = Spans()
    page.feed(html_page)
    assert [s["text"] for s in page.spans] == ["Be brief. ", "Why do trains run?"]
    assert "rgba(176,0,32" in page.spans[0]["style"] and "rgba(27,127,59,0.80)" in page.spans[1]["style"]
    assert page.blocks == ["systemBe brief. userWhy do trains run?completionOn rails & <time>."]
    assert "&lt;time&gt;" in html_page and "log p(completion) -3.2" in html_page


@pytest.mark.fast
def test_only_the_latest_texts_are_shown_newest_last():
    events = [text_event(f"text number {i} was great", {"great": 1.0}, minute=i) for i in range(MAX_TEXTS + 5)]
    data = from_events("sentiment", [], list(reversed(events)))
    assert [t["text"] for t in data.texts] == [f"text number {i} was great" for i in range(5, MAX_TEXTS + 5)]
    assert data.summary["texts explained"] == MAX_TEXTS + 5


def test_the_report_reads_text_explanations_from_the_topic_and_chromium_draws_them(broker, tmp_path):
    from cloudevents.core.bindings import kafka as ce_kafka
    from cloudevents.core.v1.event import CloudEvent
    from kafka import KafkaProducer
    from PIL import Image

    isvc = f"txt-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for attrs, body in [text_event(HOSTILE, {"great": 0.9, "plot": -0.8}), llm_event()]:
        event = CloudEvent(
            {
                "specversion": "1.0",
                "id": str(uuid.uuid4()),
                "source": "test",
                "type": attrs["type"],
                "time": attrs["time"],
                "datacontenttype": "application/json",
            },
            json.dumps(body).encode(),
        )
        msg = ce_kafka.to_binary_event(event)
        producer.send(f"{isvc}-explanations", value=msg.value, key=msg.key, headers=list(msg.headers.items()))
    producer.flush()
    producer.close()
    out = tmp_path / "report.html"
    done = subprocess.run(
        [sys.executable, "-m", "infertap", "report", isvc, "--bootstrap", broker.bootstrap, "-o", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    page = Spans()
    page.feed(out.read_text())
    assert len(page.blocks) == 2 and page.blocks[0] == HOSTILE and "script" not in page.tags
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "the report tests draw the page in headless Chromium (apt-get install chromium)"
    shot = tmp_path / "report.png"
    drawn = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=1100,900",
            out.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    pixels = list(image.getdata())
    green = sum(1 for r, g, b in pixels if g > r + 40 and g > b + 20)
    red = sum(1 for r, g, b in pixels if r > g + 60 and r > b + 40)
    assert green > 200 and red > 200, (green, red)  # highlighted tokens on both sides, not plain text
