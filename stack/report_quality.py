"""The model-quality sections of `infertap report`: performance lines, the data-quality table and
reference-vs-current histograms per feature.

- **Performance lines** from the `io.infertap.performance` detections on `<isvc>-detections`: the
  realised figures (the performance worker's windows of labelled predictions, or an estimator's
  replay) beside the estimated ones (CBPE, DLE) of the same figure, each estimate with its
  confidence band and thresholds. A figure is (metric, class): `class` `_all`, `_macro` or a class,
  as the performance gauge labels them (`infertap.detectors.performance.gauges`).
- **The data-quality table** from the `io.infertap.dataquality` detections: one row per violated
  (feature, check) per window, newest first.
- **Histograms**: a drift Detector document's reference data beside the values the logged events
  carry now (the latest records of its topic, decoded by the worker's own decoder), per feature.

Each part returns plain data; `report.py` draws and lays it out. Missing data is never an error
here: the section says so in one line (`notes`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from infertap.stream.events import DATA_QUALITY_TYPE, PERFORMANCE_TYPE

ALL, MACRO = "_all", "_macro"
CLASSIFICATION = ("accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSION = ("mae", "rmse", "mape", "r2")
#: the figures a realised body gives flat (the performance worker's shape): name -> (metric, class)
FLAT = {
    "accuracy": ("accuracy", ALL),
    "precision_macro": ("precision", MACRO),
    "recall_macro": ("recall", MACRO),
    "f1_macro": ("f1", MACRO),
    "roc_auc": ("roc_auc", MACRO),
    **{m: (m, ALL) for m in REGRESSION},
}
#: the figures plotted for a realised line that no estimate names: the window's and the macro means
DEFAULT_FIGURES = (
    ("accuracy", ALL),
    ("f1", MACRO),
    ("roc_auc", MACRO),
    ("mae", ALL),
    ("rmse", ALL),
    ("r2", ALL),
)
MAX_FIGURES = 6  # performance plots on the page
MAX_QUALITY_ROWS = 50  # rows of the data-quality table
MAX_HISTOGRAMS = 12  # features drawn
CURRENT_RECORDS = 5000  # latest records of the events topic read for the histograms


@dataclass
class PerformancePoint:
    """One window's figure: its value, and for an estimate its band and thresholds."""

    t: float
    value: float
    lower: float | None = None
    upper: float | None = None
    lower_threshold: float | None = None
    upper_threshold: float | None = None
    n: int | None = None


@dataclass
class PerformanceLine:
    """The windows of one figure from one detector, realised or estimated."""

    metric: str
    klass: str
    kind: str  # realised | estimated
    detector: str
    points: list[PerformancePoint] = field(default_factory=list)

    @property
    def figure(self) -> str:
        return figure_name(self.metric, self.klass)


def figure_name(metric: str, klass: str) -> str:
    """`accuracy`, `f1 (_macro)`, `recall (churn)`: a figure as the page names it."""
    return metric if klass == ALL else f"{metric} ({klass})"


@dataclass
class QualityRow:
    """One violated check of one window."""

    t: float
    window: str
    detector: str
    feature: str
    check: str
    count: int
    share: float | None
    threshold: float | None
    message: str = ""


@dataclass
class Histogram:
    """A feature's reference values and current values (finite numbers only)."""

    feature: str
    reference: np.ndarray
    current: np.ndarray


# --- performance -----------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def _figures(body: dict) -> list[tuple[str, str, PerformancePoint]]:
    """(metric, class, point without time) of a performance body: its `metrics` list when it has one
    (an estimator's), else the flat figures and `per_class` (the performance worker's)."""
    out = []
    if isinstance(body.get("metrics"), list):
        for m in body["metrics"]:
            if not isinstance(m, dict) or not m.get("headline", True):
                continue
            value = _number(m.get("value"))
            if value is None or not isinstance(m.get("name"), str):
                continue
            point = PerformancePoint(
                0.0,
                value,
                _number(m.get("lower")),
                _number(m.get("upper")),
                _number(m.get("lower_threshold")),
                _number(m.get("upper_threshold")),
            )
            out.append((m["name"], str(m.get("class", ALL)), point))
        return out
    for key, (metric, klass) in FLAT.items():
        value = _number(body.get(key))
        if value is not None:
            out.append((metric, klass, PerformancePoint(0.0, value)))
    per_class = body.get("per_class")
    if isinstance(per_class, dict):
        for cls, figures in per_class.items():
            if not isinstance(figures, dict):
                continue
            for metric in ("precision", "recall", "f1", "roc_auc"):
                value = _number(figures.get(metric))
                if value is not None:
                    out.append((metric, str(cls), PerformancePoint(0.0, value)))
    return out


def performance_lines(events: Iterable[tuple[dict, Any, float]]) -> list[PerformanceLine]:
    """The lines to draw from (attributes, body, time) of detection events, oldest first: every
    figure an estimate is judged on, with the realised line of the same figure when labels gave one;
    a realised line without an estimate for its metric shows the window's and macro figures."""
    lines: dict[tuple[str, str, str, str], PerformanceLine] = {}
    for attrs, body, t in events:
        if attrs.get("type") != PERFORMANCE_TYPE or not isinstance(body, dict):
            continue
        kind = str(attrs.get("performancekind") or body.get("kind") or "estimated")
        detector = str(attrs.get("detector") or body.get("detector") or "detector")
        n = body.get("n") if isinstance(body.get("n"), int) else None
        for metric, klass, point in _figures(body):
            point.t, point.n = t, n
            key = (metric, klass, kind, detector)
            lines.setdefault(key, PerformanceLine(metric, klass, kind, detector)).points.append(point)
    estimated = {(m, c) for m, c, k, _ in lines if k == "estimated"}
    estimated_metrics = {m for m, _ in estimated}
    chosen = sorted(estimated, key=_order)
    chosen += sorted(
        {
            (m, c)
            for m, c, k, _ in lines
            if k != "estimated" and m not in estimated_metrics and (m, c) in DEFAULT_FIGURES
        },
        key=_order,
    )
    figures = set(chosen[:MAX_FIGURES])
    return [
        line for key, line in sorted(lines.items(), key=lambda kv: (_order(kv[0][:2]), kv[0][2:])) if key[:2] in figures
    ]


def _order(figure: tuple[str, str]) -> tuple[int, int, str]:
    metric, klass = figure
    metrics = CLASSIFICATION + REGRESSION
    return (metrics.index(metric) if metric in metrics else len(metrics), 0 if klass in (ALL, MACRO) else 1, klass)


# --- data quality ----------------------------------------------------------------------------


def quality_rows(events: Iterable[tuple[dict, Any, float]], window_name) -> tuple[list[QualityRow], int, int]:
    """(violations newest first, at most MAX_QUALITY_ROWS; windows judged; windows violated) of the
    data-quality detections. `window_name(body, t)` names a window on the page."""
    rows: list[QualityRow] = []
    judged = violated = 0
    for attrs, body, t in events:
        if attrs.get("type") != DATA_QUALITY_TYPE or not isinstance(body, dict):
            continue
        judged += 1
        found = [v for v in body.get("violations") or [] if isinstance(v, dict)]
        violated += bool(found)
        detector = str(attrs.get("detector") or body.get("detector") or "detector")
        for v in found:
            count = v.get("count")
            rows.append(
                QualityRow(
                    t,
                    window_name(body, t),
                    detector,
                    str(v.get("feature", "?")),
                    str(v.get("check", "?")),
                    int(count) if isinstance(count, (int, float)) and not isinstance(count, bool) else 0,
                    _number(v.get("share")),
                    _number(v.get("threshold")),
                    str(v.get("message") or ""),
                )
            )
    rows.sort(key=lambda r: r.t, reverse=True)
    return rows[:MAX_QUALITY_ROWS], judged, violated


# --- reference vs current --------------------------------------------------------------------


class HistogramError(ValueError):
    """The Detector document cannot give histograms; the message is one sentence for the user."""


def detector_settings(spec: Path, isvc: str):
    """The worker settings of the spec's Detector document for `isvc` that has reference data (the
    first, when several); HistogramError with a sentence when the file holds none."""
    from infertap.stack.specs import SpecError, load_files
    from infertap.stack.specs.detector import Detector

    try:
        documents = [d for d in load_files([spec]).documents if isinstance(d.spec, Detector)]
    except SpecError as exc:
        raise HistogramError(str(exc)) from None
    ours = [d for d in documents if d.spec.inference_service in ("", isvc) and not d.spec.spec.detector.performance]
    with_data = [d for d in ours if d.spec.spec.detector.reference or d.spec.spec.detector.saved_detector]
    if not with_data:
        found = ", ".join(d.spec.name for d in documents) or "none"
        raise HistogramError(f"{spec}: no Detector document of {isvc} with reference data (found {found})")
    doc = with_data[0]
    try:
        return doc.spec.to_settings(doc.source.parent)
    except ValueError as exc:  # pydantic's ValidationError: settings the worker would refuse too
        raise HistogramError(f"{doc.where}: {exc}") from None


def reference_values(settings) -> tuple[np.ndarray | None, str | None]:
    """(reference matrix, None) of the detector's reference file or saved folder (its `x_ref.npy`), or
    (None, why not) in one sentence."""
    from infertap.detectors.reference import ReferenceError, load_reference

    width = len(settings.features)
    if settings.reference is not None:
        if Path(settings.reference).suffix.lower() not in (".csv", ".parquet", ".pq", ".npy"):
            return None, f"the reference data {settings.reference} is not a table (csv, parquet or npy)"
        try:
            return load_reference(settings.reference, settings.features), None
        except (ReferenceError, ValueError, OSError) as exc:
            return None, f"the reference data cannot be read: {exc}"
    folder = Path(settings.saved_detector or "")
    for path in sorted(folder.rglob("x_ref.npy")) if folder.is_dir() else []:
        x = np.load(path, allow_pickle=False)
        x = x.reshape(-1, 1) if x.ndim == 1 else x
        if x.ndim == 2 and (not width or x.shape[1] == width):
            return np.asarray(x, dtype=np.float64), None
    return None, f"the saved detector {folder} holds no reference data of its features (x_ref.npy)"


def read_records(bootstrap: str, topic: str, kafka_config: dict[str, str], limit: int = CURRENT_RECORDS):
    """The latest `limit` records of `topic` (split over its partitions), as the detectors' `Record`s.
    ConnectionError when no broker listens."""
    import time

    from kafka import TopicPartition

    from infertap.detectors.decode import Record
    from infertap.stream.clients import kafka_python_consumer

    consumer = kafka_python_consumer(bootstrap, kafka_config=kafka_config)
    out: list[Record] = []
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        if not partitions:
            return out
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        begin, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
        share = max(1, limit // len(tps))
        for tp in tps:
            consumer.seek(tp, max(begin[tp], end[tp] - share))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(consumer.position(tp) < end[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=500).values():
                out += [
                    Record(r.topic, r.partition, r.offset, r.value, dict(r.headers or []), r.timestamp / 1000.0, r.key)
                    for r in records
                ]
    finally:
        consumer.close()
    out.sort(key=lambda r: r.timestamp)  # the latest `limit` in time (offsets may count batches, not records)
    return out[-limit:]


def current_values(settings, records) -> np.ndarray:
    """The frame the worker would decode from `records` (rows holding a missing value kept: each
    feature's histogram drops its own)."""
    from infertap.detectors.decode import Decoder, Joiner, records_to_events

    if settings.events == "joined":
        events, _, _ = Joiner().add(records)
    else:
        events, _, _ = records_to_events(records, settings.events)
    decoder = Decoder(settings.features, settings.events, settings.input_name, settings.output_name, missing="pass")
    return decoder.decode(events).x


def histograms(reference: np.ndarray, current: np.ndarray, settings) -> list[Histogram]:
    """Per numeric or categorical feature (text has no histogram), its finite reference and current values."""
    out = []
    for j, feature in enumerate(settings.features[:MAX_HISTOGRAMS]):
        if feature.type == "text" or j >= reference.shape[1]:
            continue
        ref = reference[:, j]
        now = current[:, j] if current.ndim == 2 and j < current.shape[1] else np.empty(0)
        out.append(Histogram(feature.name, ref[np.isfinite(ref)], now[np.isfinite(now)]))
    return out


def feature_histograms(settings, bootstrap: str | None = None) -> tuple[list[Histogram], str]:
    """(histograms, a one-line note: where the data came from, or why there are none) for the worker
    settings of a Detector (`detector_settings`). ConnectionError when the events' broker does not listen."""
    reference, why = reference_values(settings)
    if reference is None:
        return [], f"No reference-vs-current histograms: {why}."
    records = read_records(bootstrap or settings.bootstrap, settings.topic, settings.kafka_config)
    if not records:
        return [], f"No reference-vs-current histograms: no logged events on {settings.topic} yet."
    current = current_values(settings, records)
    found = histograms(reference, current, settings)
    if not found:
        return [], f"No reference-vs-current histograms: detector {settings.name} has no numeric features."
    return found, (
        f"Reference: {settings.reference or settings.saved_detector} ({reference.shape[0]} rows) of detector "
        f"{settings.name}; current: the latest {len(records)} records of {settings.topic} ({current.shape[0]} rows)."
    )


# --- the page's sections ---------------------------------------------------------------------


def _png(fig) -> str:
    import base64
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure(title: str, png: str) -> str:
    import html

    esc = html.escape(title)
    return f'<figure class="plot"><figcaption>{esc}</figcaption><img alt="{esc}" src="data:image/png;base64,{png}"></figure>'


def _fmt(value: float | None, digits: str = ".4g") -> str:
    return "" if value is None else format(value, digits)


def performance_plot(figure: str, lines: list[PerformanceLine]) -> str:
    """One figure's realised and estimated lines over time, the estimates' band shaded and thresholds dashed."""
    from datetime import UTC, datetime

    import matplotlib.dates as mdates

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for line in lines:
        x: Any = [datetime.fromtimestamp(p.t, UTC) for p in line.points]
        label = f"{line.kind} ({line.detector})"
        drawn = ax.plot(x, [p.value for p in line.points], marker="o", markersize=3, label=label)
        colour = drawn[0].get_color()
        lower = [p.lower if p.lower is not None else np.nan for p in line.points]
        upper = [p.upper if p.upper is not None else np.nan for p in line.points]
        if np.isfinite(lower).any() and np.isfinite(upper).any():
            ax.fill_between(x, lower, upper, color=colour, alpha=0.15, label=f"{line.kind} band")
        for bound, values in (
            ("lower", [p.lower_threshold for p in line.points]),
            ("upper", [p.upper_threshold for p in line.points]),
        ):
            if any(v is not None for v in values):
                ys = [v if v is not None else np.nan for v in values]
                ax.step(x, ys, where="post", color="red", linestyle="--", linewidth=1, label=f"{bound} threshold")
    ax.set_title(f"Performance: {figure}")
    ax.set_ylabel(figure)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8, ncol=2)
    fig.autofmt_xdate()
    return _png(fig)


def render_performance(lines: list[PerformanceLine], note: str) -> str:
    """The Performance section: a table of the latest figures, then one plot per figure."""
    import html

    esc = html.escape
    parts = ['<h2 id="performance-section">Performance</h2>']
    if not lines:
        return parts[0] + f'<p class="note">{esc(note)}</p>'
    parts.append(
        '<table id="performance"><tr><th>Figure</th><th>Kind</th><th>Detector</th><th>Windows</th>'
        "<th>Latest</th><th>Band</th><th>Thresholds</th><th>Lowest</th></tr>"
    )
    for line in lines:
        last = line.points[-1]
        band = f"{_fmt(last.lower)} – {_fmt(last.upper)}" if last.lower is not None or last.upper is not None else ""
        limits = (
            f"{_fmt(last.lower_threshold)} – {_fmt(last.upper_threshold)}"
            if last.lower_threshold is not None or last.upper_threshold is not None
            else ""
        )
        parts.append(
            f"<tr><td>{esc(line.figure)}</td><td>{esc(line.kind)}</td><td>{esc(line.detector)}</td>"
            f"<td>{len(line.points)}</td><td>{_fmt(last.value)}</td><td>{band}</td><td>{limits}</td>"
            f"<td>{_fmt(min(p.value for p in line.points))}</td></tr>"
        )
    parts.append("</table>")
    by_figure: dict[str, list[PerformanceLine]] = {}
    for line in lines:
        by_figure.setdefault(line.figure, []).append(line)
    for figure, group in by_figure.items():
        parts.append(_figure(f"Performance: {figure}", performance_plot(figure, group)))
    return "\n".join(parts)


def render_quality(rows: list[QualityRow], judged: int, violated: int, note: str) -> str:
    """The Data quality section: how many windows violated a check, and the violations, newest first."""
    import html

    esc = html.escape
    head = '<h2 id="quality-section">Data quality</h2>'
    if not judged:
        return head + f'<p class="note">{esc(note)}</p>'
    parts = [head, f'<p class="meta">{violated} of {judged} windows judged violated a check.</p>']
    if not rows:
        return "\n".join(parts)
    parts.append(
        '<table id="quality"><tr><th>Window</th><th>Detector</th><th>Feature</th><th>Check</th><th>Count</th>'
        "<th>Share</th><th>Threshold</th></tr>"
    )
    for r in rows:
        share = "" if r.share is None else f"{r.share:.1%}"
        threshold = "" if r.threshold is None else f"{r.threshold:.3g}"
        parts.append(
            f'<tr title="{esc(r.message)}"><td>{esc(r.window)}</td><td>{esc(r.detector)}</td><td>{esc(r.feature)}</td>'
            f"<td>{esc(r.check)}</td><td>{r.count}</td><td>{share}</td><td>{threshold}</td></tr>"
        )
    parts.append("</table>")
    return "\n".join(parts)


def histogram_plot(h: Histogram) -> str:
    """Reference and current values of one feature on shared bins, as densities (the two sizes differ)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.0))
    both = np.concatenate([h.reference, h.current])
    bins = np.histogram_bin_edges(both, bins=30) if both.size else 10
    ax.hist(h.reference, bins=bins, density=True, alpha=0.5, label=f"reference ({h.reference.size})", color="#3b75af")
    if h.current.size:
        ax.hist(h.current, bins=bins, density=True, alpha=0.5, label=f"current ({h.current.size})", color="#e07b39")
    ax.set_title(f"Reference vs current: {h.feature}")
    ax.set_ylabel("density")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _png(fig)


def render_histograms(found: list[Histogram], note: str) -> str:
    """The Reference vs current section: rows and means per feature, then one histogram per feature."""
    import html

    esc = html.escape
    head = '<h2 id="histograms-section">Reference vs current</h2>'
    if not found:
        return head + f'<p class="note">{esc(note)}</p>'
    parts = [head, f'<p class="meta">{esc(note)}</p>']
    parts.append(
        '<table id="histograms"><tr><th>Feature</th><th>reference rows</th><th>current rows</th>'
        "<th>reference mean</th><th>current mean</th></tr>"
    )
    for h in found:
        now = f"{h.current.mean():.4g}" if h.current.size else ""
        ref = f"{h.reference.mean():.4g}" if h.reference.size else ""
        parts.append(
            f"<tr><td>{esc(h.feature)}</td><td>{h.reference.size}</td><td>{h.current.size}</td>"
            f"<td>{ref}</td><td>{now}</td></tr>"
        )
    parts.append("</table>")
    parts += [_figure(f"Reference vs current: {h.feature}", histogram_plot(h)) for h in found]
    return "\n".join(parts)
