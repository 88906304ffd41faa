"""`infertap report`: one self-contained HTML page about an InferenceService, without Grafana.

Data comes from Prometheus (`query_range` over the detectors', explainers' and servers'
metrics) or straight from the Kafka topics (`<isvc>-detections`, `<isvc>-explanations`).
Plots are drawn with matplotlib and embedded as base64 PNGs, so the page is one file that
opens anywhere: per-feature drift p-values over time, window drift flags, outlier rate,
top features by mean |attribution|, and request rate (Prometheus only). Text explanations
(token attributions of text classifiers, prompt attributions of LLM completions) from the
explanations topic are shown as the text itself, each token or segment highlighted by its
score (green for, red against the explained output; escaped HTML, no script); from
Prometheus, the top tokens by mean |attribution|. From the detections topic, the model-quality
sections (`report_quality.py`): realised beside estimated performance, the data-quality table;
with a Detector document (`--detector`), reference-vs-current histograms per feature. A section
without data says so in one line.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from infertap.stack.report_quality import (
    Histogram,
    PerformanceLine,
    QualityRow,
    performance_lines,
    quality_rows,
    render_histograms,
    render_performance,
    render_quality,
)
from infertap.stream.events import ADVERSARIAL_TYPE, DRIFT_TYPE, OUTLIER_TYPE
from infertap.stream.topics import topics


@dataclass
class Series:
    label: str
    t: list[float] = field(default_factory=list)  # unix seconds
    v: list[float] = field(default_factory=list)


@dataclass
class ReportData:
    """What the page shows; filled from Prometheus or from the topics."""

    inference_service: str
    source: str
    drift_p: dict[str, Series] = field(default_factory=dict)  # feature -> p-values over time
    drift_flags: dict[str, Series] = field(default_factory=dict)  # detector -> 0/1 per window
    outlier_rate: dict[str, Series] = field(default_factory=dict)  # detector -> share of rows flagged
    attributions: dict[str, float] = field(default_factory=dict)  # feature -> mean |attribution|
    tokens: dict[str, float] = field(default_factory=dict)  # token -> mean |attribution| (text explainers)
    texts: list[dict[str, Any]] = field(default_factory=list)  # the latest text / LLM explanations, newest last
    requests: dict[str, Series] = field(default_factory=dict)  # model -> requests per second
    performance: list[PerformanceLine] = field(default_factory=list)  # realised and estimated, per figure
    quality: list[QualityRow] = field(default_factory=list)  # violated checks, newest first
    quality_windows: tuple[int, int] = (0, 0)  # data-quality windows judged, violated
    histograms: list[Histogram] = field(default_factory=list)  # reference vs current per feature
    #: per section (performance, quality, histograms): its one line when it has no data, or where the data came from
    section_notes: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (
            self.drift_p
            or self.drift_flags
            or self.outlier_rate
            or self.attributions
            or self.requests
            or self.tokens
            or self.texts
            or self.performance
            or self.quality_windows[0]
            or self.histograms
        )


# --- from Prometheus -----------------------------------------------------------------------


class PrometheusError(RuntimeError):
    """Prometheus could not be queried; the message says why."""


def _prom(url: str, path: str, params: dict) -> list[dict]:
    try:
        r = httpx.get(f"{url.rstrip('/')}/api/v1/{path}", params=params, timeout=30)
    except httpx.HTTPError as exc:
        raise PrometheusError(f"cannot reach Prometheus at {url}: {exc}") from None
    try:
        body = r.json()
    except ValueError:
        raise PrometheusError(f"{url} answered {r.status_code} without JSON: is it Prometheus?") from None
    if r.status_code != 200 or body.get("status") != "success":
        raise PrometheusError(f"Prometheus rejected {params.get('query')!r}: {body.get('error', r.status_code)}")
    return body["data"]["result"]


def _series(result: list[dict], label: str) -> dict[str, Series]:
    out = {}
    for item in result:
        name = item["metric"].get(label, "") or "all"
        points = [(float(t), float(v)) for t, v in item.get("values", [])]
        points = [(t, v) for t, v in points if v == v]  # drop NaN
        if points:
            out[name] = Series(name, [t for t, _ in points], [v for _, v in points])
    return out


def from_prometheus(
    url: str, isvc: str, minutes: float = 60, step: float | None = None, end: float | None = None
) -> ReportData:
    """Query the last `minutes` of metrics of `isvc` (step: about 300 points by default)."""
    end = end or time.time()
    start = end - minutes * 60
    step = step or max(1.0, round(minutes * 60 / 300, 1))
    window = f"{int(max(4 * step, 15))}s"
    sel = f'inference_service="{isvc}"'
    data = ReportData(isvc, f"Prometheus {url}, last {minutes:g} min")
    from_topic = f"read from the {topics(isvc).detections} topic: run infertap report with --bootstrap"
    data.section_notes["performance"] = f"Performance lines are {from_topic}."
    data.section_notes["quality"] = f"The data-quality table is {from_topic}."

    def rng(expr: str) -> list[dict]:
        return _prom(url, "query_range", {"query": expr, "start": start, "end": end, "step": step})

    data.drift_p = _series(
        rng(f'min by (feature) (infertap_detector_drift_p_value{{{sel}, feature!="_all"}})'), "feature"
    )
    data.drift_flags = _series(rng(f'max by (detector) (infertap_detector_drift{{{sel}, feature="_all"}})'), "detector")
    data.outlier_rate = _series(
        rng(
            f"sum by (detector) (rate(infertap_detector_outliers_total{{{sel}}}[{window}])) / "
            f"sum by (detector) (rate(infertap_detector_rows_evaluated_total{{{sel}}}[{window}]))"
        ),
        "detector",
    )
    data.requests = _series(rng(f"sum by (model) (rate(infertap_requests_total{{{sel}}}[{window}]))"), "model")
    for item in _prom(
        url, "query", {"query": f"max by (feature) (infertap_explainer_mean_abs_attribution{{{sel}}})", "time": end}
    ):
        data.attributions[item["metric"].get("feature", "?")] = float(item["value"][1])
    for item in _prom(
        url,
        "query",
        {"query": f"max by (token) (infertap_explainer_token_mean_abs_attribution{{{sel}}})", "time": end},
    ):
        data.tokens[item["metric"].get("token", "?")] = float(item["value"][1])
    totals = {
        "windows evaluated": f"sum(increase(infertap_detector_windows_evaluated_total{{{sel}}}[{int(minutes * 60)}s]))",
        "outliers flagged": f"sum(increase(infertap_detector_outliers_total{{{sel}}}[{int(minutes * 60)}s]))",
        "requests served": f"sum(increase(infertap_requests_total{{{sel}}}[{int(minutes * 60)}s]))",
        "events delivered": f'sum(increase(infertap_logger_events_total{{{sel}, outcome="sent"}}[{int(minutes * 60)}s]))',
    }
    for name, expr in totals.items():
        result = _prom(url, "query", {"query": expr, "time": end})
        if result:
            data.summary[name] = round(float(result[0]["value"][1]))
    return data


# --- from the topics -----------------------------------------------------------------------


def read_topic(bootstrap: str, topic: str, idle_timeout: float = 3.0, limit: int = 100_000) -> list[tuple[dict, Any]]:
    """Every CloudEvent on `topic` from the beginning, as (attributes, decoded JSON body)."""
    from kafka import TopicPartition

    from infertap.stack.tail import decode
    from infertap.stream.clients import kafka_python_consumer

    consumer = kafka_python_consumer(bootstrap)  # ConnectionError at once when no broker listens
    out: list[tuple[dict, Any]] = []
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            return out
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        last = time.monotonic()
        while len(out) < limit and time.monotonic() - last < idle_timeout:
            if all(consumer.position(tp) >= ends[tp] for tp in tps):
                break
            for records in consumer.poll(timeout_ms=500).values():
                last = time.monotonic()
                for record in records:
                    try:
                        event = decode(record.headers, record.key, record.value)
                    except Exception:  # noqa: BLE001 - a malformed record is skipped and counted by the caller
                        event = None
                    if event is None:
                        continue
                    out.append((event.get_attributes(), _json(event.get_data())))
    finally:
        consumer.close()
    return out


def _json(data: Any) -> Any:
    if isinstance(data, (bytes, bytearray)):
        try:
            return json.loads(data)
        except ValueError:
            return None
    return data


def _ts(attrs: dict, body: dict) -> float:
    stamp = body.get("window_end") if isinstance(body, dict) else None
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    when = attrs.get("time")
    return float(when.timestamp()) if when is not None and hasattr(when, "timestamp") else time.time()


def from_events(
    isvc: str, detections: Iterable[tuple[dict, Any]], explanations: Iterable[tuple[dict, Any]] = (), source: str = ""
) -> ReportData:
    """Build the page's data from detection and explanation CloudEvents (attributes, JSON body)."""
    data = ReportData(isvc, source or f"topics {topics(isvc).detections}, {topics(isvc).explanations}")
    detections = sorted(detections, key=lambda e: _ts(*e))
    timed = [(attrs, body, _ts(attrs, body)) for attrs, body in detections]
    data.performance = performance_lines(timed)
    data.quality, judged, violated = quality_rows(timed, _window_name)
    data.quality_windows = (judged, violated)
    data.section_notes["performance"] = (
        f"No performance detections (io.infertap.performance) on {topics(isvc).detections}."
    )
    data.section_notes["quality"] = (
        f"No data-quality detections (io.infertap.dataquality) on {topics(isvc).detections}."
    )
    windows = outliers = rows = 0
    for attrs, body in detections:
        if not isinstance(body, dict):
            continue
        t, detector = _ts(attrs, body), str(attrs.get("detector") or body.get("detector") or "detector")
        kind = attrs.get("type")
        windows += 1
        if kind == DRIFT_TYPE:
            for f in body.get("features") or []:
                if f.get("p_val") is not None:
                    s = data.drift_p.setdefault(f["name"], Series(f["name"]))
                    s.t.append(t)
                    s.v.append(float(f["p_val"]))
            if body.get("is_drift") is not None:
                s = data.drift_flags.setdefault(detector, Series(detector))
                s.t.append(t)
                s.v.append(float(bool(body["is_drift"])))
        elif kind in (OUTLIER_TYPE, ADVERSARIAL_TYPE):
            flags = body.get("is_outlier") if kind == OUTLIER_TYPE else body.get("is_adversarial")
            n = body.get("n") or len(flags or [])
            if n:
                flagged = sum(bool(x) for x in flags or [])
                label = detector if kind == OUTLIER_TYPE else f"{detector} (adversarial)"
                s = data.outlier_rate.setdefault(label, Series(label))
                s.t.append(t)
                s.v.append(flagged / n)
                if kind == OUTLIER_TYPE:
                    outliers, rows = outliers + flagged, rows + n
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    texts: list[tuple[float, dict[str, Any]]] = []
    for attrs, body in explanations:
        for item in _explained(body):
            if item.get("kind") in ("text", "llm"):
                texts.append((_ts(attrs, body), item | {"explainer": body.get("explainer", "")}))
                continue
            for name, value in zip(item.get("feature_names") or [], item.get("values") or [], strict=False):
                if value is not None:
                    sums[name] = sums.get(name, 0.0) + abs(float(value))
                    counts[name] = counts.get(name, 0) + 1
    data.attributions = {n: sums[n] / counts[n] for n in sums}
    data.texts = [item for _, item in sorted(texts, key=lambda kv: kv[0])[-MAX_TEXTS:]]
    data.summary = {
        "windows evaluated": windows,
        "outliers flagged": outliers,
        "rows checked for outliers": rows,
        "instances explained": max(counts.values(), default=0),
    }
    if texts:
        data.summary["texts explained"] = len(texts)
    if data.quality_windows[0]:
        data.summary["data-quality windows violated"] = data.quality_windows[1]
    return data


def _window_name(body: dict, t: float) -> str:
    """A window as the data-quality table names it: its time span, or its last event's time."""
    span = body.get("window") if isinstance(body.get("window"), dict) else None
    if span and span.get("start") and span.get("end"):
        return f"{span['start']} – {span['end']}"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _explained(body: Any) -> list[dict]:
    """Instance explanations in an explanation event body (an ExplainResponse, or one instance)."""
    if isinstance(body, dict) and isinstance(body.get("explanations"), list):
        return [e for e in body["explanations"] if isinstance(e, dict)]
    if isinstance(body, dict) and ("feature_names" in body or body.get("kind") in ("text", "llm")):
        return [body]
    return []


def from_kafka(bootstrap: str, isvc: str, idle_timeout: float = 3.0) -> ReportData:
    names = topics(isvc)
    detections = read_topic(bootstrap, names.detections, idle_timeout)
    explanations = read_topic(bootstrap, names.explanations, idle_timeout)
    data = from_events(
        isvc,
        detections,
        explanations,
        f"Kafka {bootstrap}: {names.detections} ({len(detections)} events), "
        f"{names.explanations} ({len(explanations)} events)",
    )
    return data


# --- the page ------------------------------------------------------------------------------


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _times(ts: list[float]) -> list[datetime]:
    return [datetime.fromtimestamp(t, UTC) for t in ts]


def plots(data: ReportData) -> dict[str, str]:
    """{title: base64 PNG} of every plot there is data for."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    out: dict[str, str] = {}

    def timeline(
        title: str,
        series: dict[str, Series],
        ylabel: str,
        log: bool = False,
        line: float | None = None,
        step: bool = False,
        percent: bool = False,
    ):
        fig, ax = plt.subplots(figsize=(9, 3.6))
        for s in sorted(series.values(), key=lambda s: s.label):
            draw = ax.step if step else ax.plot
            kwargs = {"where": "post"} if step else {"marker": "o", "markersize": 3}
            x: Any = _times(s.t)  # datetimes: matplotlib's dates converter takes them, its stubs do not say so
            draw(x, [v * 100 if percent else v for v in s.v], label=s.label, **kwargs)
        if line is not None:
            ax.axhline(line, color="red", linestyle="--", linewidth=1, label=f"threshold {line:g}")
        if log:
            ax.set_yscale("log")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8, ncol=2)
        fig.autofmt_xdate()
        out[title] = _png(fig)

    if data.drift_p:
        floor = {k: Series(s.label, s.t, [max(v, 1e-300) for v in s.v]) for k, s in data.drift_p.items()}
        timeline("Per-feature drift p-value", floor, "p-value (log)", log=True, line=0.05)
    if data.drift_flags:
        timeline("Drift flag per window", data.drift_flags, "drift (1 = drifted)", step=True)
    if data.outlier_rate:
        timeline("Outlier rate", data.outlier_rate, "% of rows flagged", percent=True)
    if data.attributions:
        top = sorted(data.attributions.items(), key=lambda kv: kv[1], reverse=True)[:15]
        fig, ax = plt.subplots(figsize=(9, 0.4 * len(top) + 1.2))
        ax.barh([k for k, _ in top][::-1], [v for _, v in top][::-1], color="#3b75af")
        ax.set_xlabel("mean |attribution|")
        ax.set_title("Top features by mean |attribution|")
        ax.grid(axis="x", alpha=0.3)
        out["Top features by mean |attribution|"] = _png(fig)
    if data.requests:
        timeline("Requests per second", data.requests, "req/s")
    return out


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1000px;color:#222}
h1{font-size:1.6rem;margin-bottom:.2rem} .meta{color:#666;margin-top:0}
table{border-collapse:collapse;margin:1rem 0} td,th{border:1px solid #ddd;padding:.3rem .7rem;text-align:left}
th{background:#f4f4f4} .drift{color:#b00020;font-weight:600} .ok{color:#1b7f3b}
figure{margin:1.2rem 0} figcaption{font-weight:600;margin-bottom:.3rem} img{max-width:100%}
.note{color:#8a6d3b}
.textexp{border:1px solid #ddd;border-radius:4px;padding:.6rem .8rem;margin:.8rem 0}
.textexp h3{font-size:.95rem;margin:0 0 .4rem 0;font-weight:600}
.textexp .text{white-space:pre-wrap;line-height:1.8;font-family:ui-monospace,Menlo,Consolas,monospace}
.textexp .role{color:#666;font-size:.8rem;display:block;margin-top:.3rem}
.textexp .completion{background:#f4f4f4;padding:.2rem .4rem;border-radius:3px}
.tok{border-radius:3px;padding:.05rem 0}
"""


def _latest(series: Series) -> float:
    return series.v[-1] if series.v else float("nan")


def render_html(data: ReportData, generated: datetime | None = None) -> str:
    """The page: summary table, per-feature latest p-values, then the plots."""
    generated = generated or datetime.now(UTC)
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>infertap report: {esc(data.inference_service)}</title><style>{STYLE}</style></head><body>",
        f"<h1>infertap report: {esc(data.inference_service)}</h1>",
        f'<p class="meta">Source: {esc(data.source)} · generated {generated.strftime("%Y-%m-%d %H:%M:%S UTC")}</p>',
    ]
    if data.summary:
        parts.append('<table id="summary"><tr><th>What</th><th>Count</th></tr>')
        parts += [f"<tr><td>{esc(k)}</td><td>{v}</td></tr>" for k, v in data.summary.items()]
        parts.append("</table>")
    if data.drift_p:
        parts.append(
            '<h2>Drift by feature</h2><table id="features"><tr><th>Feature</th><th>latest p-value</th>'
            "<th>lowest p-value</th><th>verdict (p &lt; 0.05)</th></tr>"
        )
        for name, s in sorted(data.drift_p.items(), key=lambda kv: _latest(kv[1])):
            latest, low = _latest(s), min(s.v)
            verdict = '<span class="drift">drift</span>' if latest < 0.05 else '<span class="ok">no drift</span>'
            parts.append(f"<tr><td>{esc(name)}</td><td>{latest:.3g}</td><td>{low:.3g}</td><td>{verdict}</td></tr>")
        parts.append("</table>")
    if data.attributions:
        parts.append(
            '<h2>Explanations</h2><table id="attributions"><tr><th>Feature</th><th>mean |attribution|</th></tr>'
        )
        for name, v in sorted(data.attributions.items(), key=lambda kv: kv[1], reverse=True)[:15]:
            parts.append(f"<tr><td>{esc(name)}</td><td>{v:.4g}</td></tr>")
        parts.append("</table>")
    if data.tokens:
        parts.append('<h2>Top tokens</h2><table id="tokens"><tr><th>Token</th><th>mean |attribution|</th></tr>')
        for name, v in sorted(data.tokens.items(), key=lambda kv: kv[1], reverse=True)[:20]:
            parts.append(f"<tr><td>{esc(name)}</td><td>{v:.4g}</td></tr>")
        parts.append("</table>")
    if data.texts:
        parts.append('<h2>Text explanations</h2><div id="texts">')
        parts.append(
            '<p class="meta">The latest explained texts, newest last: each token (or prompt segment) on '
            '<span class="tok" style="background:rgba(27,127,59,0.6)">green</span> pushed the explained output '
            'up, on <span class="tok" style="background:rgba(176,0,32,0.6)">red</span> down; the stronger the '
            "colour, the larger its share. Hover for the score.</p>"
        )
        parts += [_text_block(item) for item in data.texts]
        parts.append("</div>")
    notes = data.section_notes
    parts.append(render_performance(data.performance, notes.get("performance", "No performance detections.")))
    parts.append(
        render_quality(data.quality, *data.quality_windows, notes.get("quality", "No data-quality detections."))
    )
    parts.append(
        render_histograms(
            data.histograms,
            notes.get(
                "histograms",
                "No reference-vs-current histograms: pass --detector SPEC (a Detector document with reference data).",
            ),
        )
    )
    images = plots(data)
    if images:
        parts.append("<h2>Plots</h2>")
    for title, png in images.items():
        parts.append(
            f'<figure class="plot"><figcaption>{esc(title)}</figcaption>'
            f'<img alt="{esc(title)}" src="data:image/png;base64,{png}"></figure>'
        )
    if data.empty:
        parts.append('<p class="note">No detections, explanations or requests found for this InferenceService yet.</p>')
    for note in data.notes:
        parts.append(f'<p class="note">{esc(note)}</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


MAX_TEXTS = 10  # text explanations shown on the page


def _span(text: str, score: float | None, top: float) -> str:
    """`text` escaped, on a background whose hue is the sign of `score` and whose strength its share of `top`."""
    esc = html.escape(text)
    if score is None or not top or score != score:
        return esc
    alpha = 0.1 + 0.7 * min(1.0, abs(score) / top)
    rgb = "27,127,59" if score > 0 else "176,0,32"
    return f'<span class="tok" style="background:rgba({rgb},{alpha:.2f})" title="{score:+.4g}">{esc}</span>'


def _numbers(values: Iterable[Any]) -> list[float | None]:
    out: list[float | None] = []
    for v in values:
        out.append(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None)
    return out


def _text_block(item: dict[str, Any]) -> str:
    """One explanation as highlighted text: a classifier's text by its token offsets, an LLM prompt by its
    segments (grouped by message) followed by the completion."""
    esc = html.escape
    method = str(item.get("method") or "")
    if item.get("kind") == "llm":
        segments = [s for s in item.get("segments") or [] if isinstance(s, dict)]
        scores = _numbers(s.get("attribution") for s in segments)
        top = max((abs(v) for v in scores if v is not None), default=0.0)
        head = f"{esc(str(item.get('explainer') or ''))} · {esc(method)} · log p(completion) "
        head += f"{float(item.get('target_log_prob') or 0.0):.3g}"
        body, message = [], None
        for segment, score in zip(segments, scores, strict=True):
            if segment.get("message") != message:
                message = segment.get("message")
                body.append(f'<span class="role">{esc(str(segment.get("role") or ""))}</span>')
            body.append(_span(str(segment.get("text") or ""), score, top))
        body.append(
            f'<span class="role">completion</span><span class="completion">{esc(str(item.get("completion") or ""))}</span>'
        )
        return f'<div class="textexp llm"><h3>{head}</h3><div class="text">{"".join(body)}</div></div>'
    text = str(item.get("text") or "")
    offsets = [o for o in item.get("offsets") or [] if isinstance(o, (list, tuple)) and len(o) == 2]
    scores = _numbers(item.get("attributions") or [])
    top = max((abs(v) for v in scores if v is not None), default=0.0)
    label = item.get("target_label") if item.get("target_label") is not None else item.get("target")
    head = f"{esc(str(item.get('explainer') or ''))} · {esc(method)} · {esc(str(label))}"
    if isinstance(item.get("prediction"), (int, float)):
        head += f" ({esc(str(item.get('output_space') or ''))} {float(item['prediction']):.3g})"
    body, position = [], 0
    for (start, end), score in zip(offsets, scores, strict=False):
        start, end = int(start), int(end)
        if start < position or end > len(text):  # offsets that do not fit the text: show the text plain
            return f'<div class="textexp"><h3>{head}</h3><div class="text">{esc(text)}</div></div>'
        body += [esc(text[position:start]), _span(text[start:end], score, top)]
        position = end
    body.append(esc(text[position:]))
    return f'<div class="textexp"><h3>{head}</h3><div class="text">{"".join(body)}</div></div>'


def write_report(data: ReportData, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(data), encoding="utf-8")
    return out
