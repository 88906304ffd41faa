"""Build infertap's Grafana dashboards with grafana-foundation-sdk and write them as JSON.

    .venv/bin/python dashboards/build.py            # writes dashboards/grafana/*.json
    .venv/bin/python dashboards/build.py --check    # exit 1 if the committed JSON is stale

The library is Grafana Labs' `grafana-foundation-sdk` (the build for Grafana 11.6, pinned in
the `dev` extra); the JSON is committed so that Grafana, the Kubernetes ConfigMaps and the
tests read files, not this script.

Every panel and query names its datasource as `${datasource}`, a dashboard variable of
type `datasource`: file provisioning cannot resolve the `${DS_...}` inputs of the UI import
flow. The other variables (`inference_service`, `model`, `detector`, `explainer`) are
multi-valued with "All" meaning `.*`, so each query filters with `=~"$var"`.

Only metrics that our servers export are used (their definitions: serving/metrics.py,
logger/metrics.py, logger/tap.py, sidecar/llm_metrics.py, sidecar/redact.py,
detectors/metrics.py, detectors/performance/gauges.py and metrics.py, detectors/estimate_metrics.py,
detectors/quality/metrics.py, explainers/metrics.py);
tests/dashboards runs every query against a real Prometheus scraping a real stack.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path

from grafana_foundation_sdk.builders import bargauge, heatmap, stat, statetimeline, timeseries
from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    DatasourceVariable,
    QueryVariable,
    Row,
    ThresholdsConfig,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import BarGaugeDisplayMode, HeatmapCellLayout, VizOrientation
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    DynamicConfigValue,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.heatmap import HeatmapColorMode, HeatmapColorScale

OUT = Path(__file__).resolve().parent / "grafana"
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"
TAGS = ["infertap"]


# --- small builders ------------------------------------------------------------------------


def query(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> Dataquery:
    q = Dataquery().expr(expr).ref_id(ref).datasource(DS)
    if legend:
        q = q.legend_format(legend)
    if instant:
        q = q.instant()
    else:
        q = q.range()
    return q


def _targets(panel, targets: Iterable[Dataquery]):
    for i, target in enumerate(targets):
        panel = panel.with_target(target.ref_id(chr(ord("A") + i)))
    return panel


def series(
    title: str,
    description: str,
    unit: str,
    *targets: Dataquery,
    w: int = 12,
    h: int = 8,
    min_val: float | None = 0,
    log_y: bool = False,
) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).description(description).datasource(DS).unit(unit).span(w).height(h)
    if min_val is not None:
        panel = panel.min(min_val)
    if log_y:
        from grafana_foundation_sdk.builders.common import ScaleDistributionConfig
        from grafana_foundation_sdk.models.common import ScaleDistribution

        panel = panel.scale_distribution(ScaleDistributionConfig().type(ScaleDistribution.LOG).log(10))
    return _targets(panel, targets)


def single(
    title: str,
    description: str,
    unit: str,
    *targets: Dataquery,
    w: int = 6,
    h: int = 4,
    steps: list[tuple[float | None, str]] | None = None,
) -> stat.Panel:
    panel = stat.Panel().title(title).description(description).datasource(DS).unit(unit).span(w).height(h)
    if steps:
        panel = panel.thresholds(thresholds(steps))
    return _targets(panel, targets)


def thresholds(steps: list[tuple[float | None, str]]) -> ThresholdsConfig:
    return ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps([Threshold(value=v, color=c) for v, c in steps])


def datasource_variable() -> DatasourceVariable:
    return DatasourceVariable("datasource").label("Data source").type("prometheus")


def label_variable(name: str, label: str, metric: str, depends: str = "") -> QueryVariable:
    """A multi-valued variable over label_values(metric{depends}, name); All means `.*`."""
    selector = f"{metric}{{{depends}}}" if depends else metric
    return (
        QueryVariable(name)
        .label(label)
        .datasource(DS)
        .query({"query": f"label_values({selector}, {name})", "refId": f"{name}-values", "qryType": 1})
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(VariableOption(selected=True, text="All", value="$__all"))
    )


def dashboard(uid: str, title: str, description: str) -> Dashboard:
    return (
        Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .time("now-30m", "now")
        .refresh("10s")
        .timezone("browser")
    )


def encode(board: Dashboard) -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(board.build()) + "\n"


# --- serving overview ----------------------------------------------------------------------


def serving() -> Dashboard:
    sel = 'inference_service=~"$inference_service", model=~"$model"'
    req = f"infertap_requests_total{{{sel}}}"
    dur = f"infertap_request_duration_seconds_bucket{{{sel}}}"
    proxy_sel = 'inference_service=~"$inference_service"'
    return (
        dashboard(
            "infertap-serving",
            "infertap / Serving overview",
            "Model servers and the logger sidecars in front of them: traffic, errors, latency per model.",
        )
        .with_variable(datasource_variable())
        .with_variable(label_variable("inference_service", "InferenceService", "infertap_requests_total"))
        .with_variable(
            label_variable("model", "Model", "infertap_requests_total", 'inference_service=~"$inference_service"')
        )
        .with_row(Row("Traffic"))
        .with_panel(
            single(
                "Requests per second",
                "All inference requests, every model and endpoint.",
                "reqps",
                query(f"sum(rate({req}[{RATE}]))"),
            )
        )
        .with_panel(
            single(
                "Error ratio",
                "Share of requests answered with a non-2xx status.",
                "percentunit",
                query(f'sum(rate(infertap_requests_total{{{sel}, code!~"2.."}}[{RATE}])) / sum(rate({req}[{RATE}]))'),
                steps=[(None, "green"), (0.01, "orange"), (0.05, "red")],
            )
        )
        .with_panel(
            single(
                "p99 latency",
                "99th percentile of request latency over all models.",
                "s",
                query(f"histogram_quantile(0.99, sum by (le) (rate({dur}[{RATE}])))"),
            )
        )
        .with_panel(
            single(
                "Models ready",
                "Models loaded and serving (infertap_model_ready).",
                "none",
                query(f"sum(infertap_model_ready{{{sel}}})", instant=True),
            )
        )
        .with_panel(
            series(
                "Request rate per model",
                "Requests per second by InferenceService, model and endpoint.",
                "reqps",
                query(
                    f"sum by (inference_service, model, endpoint) (rate({req}[{RATE}]))",
                    "{{inference_service}} {{model}} {{endpoint}}",
                ),
            )
        )
        .with_panel(
            series(
                "Errors by status code",
                "Non-2xx answers per second, by model and HTTP status.",
                "reqps",
                query(
                    f'sum by (model, code) (rate(infertap_requests_total{{{sel}, code!~"2.."}}[{RATE}]))',
                    "{{model}} {{code}}",
                ),
            )
        )
        .with_row(Row("Latency"))
        .with_panel(
            series(
                "Latency percentiles per model",
                "p50, p95 and p99 of the model server's request latency.",
                "s",
                *[
                    query(f"histogram_quantile({q}, sum by (le, model) (rate({dur}[{RATE}])))", f"{{{{model}}}} p{p}")
                    for q, p in ((0.5, 50), (0.95, 95), (0.99, 99))
                ],
            )
        )
        .with_panel(
            series(
                "Batch size per model",
                "Rows per model call under dynamic batching (mean and p95).",
                "none",
                query(
                    f"sum by (model) (rate(infertap_batch_size_sum{{{sel}}}[{RATE}])) / "
                    f"sum by (model) (rate(infertap_batch_size_count{{{sel}}}[{RATE}]))",
                    "{{model}} mean",
                ),
                query(
                    f"histogram_quantile(0.95, sum by (le, model) (rate(infertap_batch_size_bucket{{{sel}}}[{RATE}])))",
                    "{{model}} p95",
                ),
            )
        )
        .with_row(Row("Logger sidecar (proxy hop)"))
        .with_panel(
            series(
                "Through the sidecar",
                "Requests per second through the logger sidecar, by status.",
                "reqps",
                query(
                    f"sum by (inference_service, code) (rate(infertap_proxy_requests_total{{{sel}}}[{RATE}]))",
                    "{{inference_service}} {{code}}",
                ),
            )
        )
        .with_panel(
            series(
                "Latency through the sidecar",
                "p50 and p99 from request arrival to the end of the response, "
                "measured in the sidecar (includes the model server).",
                "s",
                *[
                    query(
                        f"histogram_quantile({q}, sum by (le, inference_service) "
                        f"(rate(infertap_proxy_request_duration_seconds_bucket{{{proxy_sel}}}[{RATE}])))",
                        f"{{{{inference_service}}}} p{p}",
                    )
                    for q, p in ((0.5, 50), (0.99, 99))
                ],
            )
        )
    )


# --- logger delivery -----------------------------------------------------------------------


def logger() -> Dashboard:
    sel = 'inference_service=~"$inference_service"'
    return (
        dashboard(
            "infertap-logger",
            "infertap / Logger delivery",
            "What the logger sidecars did with the CloudEvents they built: sent, retried, spooled, dropped.",
        )
        .with_variable(datasource_variable())
        .with_variable(label_variable("inference_service", "InferenceService", "infertap_logger_events_total"))
        .with_row(Row("Events"))
        .with_panel(
            single(
                "Events sent / s",
                "Events acknowledged by the sinks.",
                "ops",
                query(f'sum(rate(infertap_logger_events_total{{{sel}, outcome="sent"}}[{RATE}]))'),
            )
        )
        .with_panel(
            single(
                "Dropped (range)",
                "Events lost in the selected time range: spool full or unwritable.",
                "none",
                query(
                    f'sum(increase(infertap_logger_events_total{{{sel}, outcome="dropped"}}[$__range]))', instant=True
                ),
                steps=[(None, "green"), (1, "red")],
            )
        )
        .with_panel(
            single(
                "Spooled now",
                "Events on disk waiting for the sink.",
                "none",
                query(f"sum(infertap_logger_spool_events{{{sel}}})", instant=True),
                steps=[(None, "green"), (1, "orange")],
            )
        )
        .with_panel(
            single(
                "Queue depth",
                "Events waiting in memory for the sinks.",
                "none",
                query(f"sum(infertap_logger_queue_depth{{{sel}}})", instant=True),
            )
        )
        .with_panel(
            series(
                "Events by outcome",
                "sent: acknowledged; retried: a failed attempt; spooled: written to disk; dropped: lost.",
                "ops",
                query(f"sum by (outcome) (rate(infertap_logger_events_total{{{sel}}}[{RATE}]))", "{{outcome}}"),
            )
        )
        .with_panel(
            series(
                "Events built by the tap",
                "CloudEvents handed to delivery, by type; and requests not logged, by reason.",
                "ops",
                query(f"sum by (type) (rate(infertap_tap_events_submitted_total{{{sel}}}[{RATE}]))", "{{type}}"),
                query(
                    f"sum by (reason) (rate(infertap_tap_requests_not_logged_total{{{sel}}}[{RATE}]))",
                    "not logged: {{reason}}",
                ),
            )
        )
        .with_row(Row("Queue and spool"))
        .with_panel(
            series(
                "Queue",
                "In-memory queue per sink: events and bytes.",
                "none",
                query(
                    f"sum by (inference_service, sink) (infertap_logger_queue_depth{{{sel}}})",
                    "{{inference_service}} {{sink}} events",
                ),
                query(
                    f"sum by (inference_service, sink) (infertap_logger_queue_bytes{{{sel}}})",
                    "{{inference_service}} {{sink}} bytes",
                ),
            )
        )
        .with_panel(
            series(
                "Spool",
                "Disk spool per sink: bytes and events not yet delivered.",
                "bytes",
                query(
                    f"sum by (inference_service, sink) (infertap_logger_spool_bytes{{{sel}}})",
                    "{{inference_service}} {{sink}} bytes",
                ),
                query(
                    f"sum by (inference_service, sink) (infertap_logger_spool_events{{{sel}}})",
                    "{{inference_service}} {{sink}} events",
                ),
            )
        )
        .with_row(Row("Sinks"))
        .with_panel(
            series(
                "Sink latency",
                "Time a sink took to acknowledge one batch (p50, p99).",
                "s",
                *[
                    query(
                        f"histogram_quantile({q}, sum by (le, sink) "
                        f"(rate(infertap_logger_sink_latency_seconds_bucket{{{sel}}}[{RATE}])))",
                        f"{{{{sink}}}} p{p}",
                    )
                    for q, p in ((0.5, 50), (0.99, 99))
                ],
            )
        )
        .with_panel(
            series(
                "Batches per second",
                "Batches acknowledged per sink; events per batch is sent / batches.",
                "ops",
                query(f"sum by (sink) (rate(infertap_logger_sink_latency_seconds_count{{{sel}}}[{RATE}]))", "{{sink}}"),
            )
        )
    )


# --- drift and outliers --------------------------------------------------------------------


def drift() -> Dashboard:
    sel = 'inference_service=~"$inference_service", detector=~"$detector"'
    feat = f'{sel}, feature!="_all"'
    return (
        dashboard(
            "infertap-drift",
            "infertap / Drift and outliers",
            "Detector workers: per-feature drift p-values, drift flags, outlier and adversarial rates, consumer lag.",
        )
        .with_variable(datasource_variable())
        .with_variable(
            label_variable("inference_service", "InferenceService", "infertap_detector_windows_evaluated_total")
        )
        .with_variable(
            label_variable(
                "detector",
                "Detector",
                "infertap_detector_windows_evaluated_total",
                'inference_service=~"$inference_service"',
            )
        )
        .with_row(Row("Drift"))
        .with_panel(
            single(
                "Drifting now",
                "Detectors whose latest window drifted.",
                "none",
                query(
                    f'sum(max by (inference_service, detector) (infertap_detector_drift{{{sel}, feature="_all"}}))',
                    instant=True,
                ),
                steps=[(None, "green"), (1, "red")],
            )
        )
        .with_panel(
            single(
                "Features drifting",
                "Features flagged in the latest window of each detector.",
                "none",
                query(f"sum(infertap_detector_drift{{{feat}}})", instant=True),
                steps=[(None, "green"), (1, "orange")],
            )
        )
        .with_panel(
            single(
                "Lowest p-value",
                "Smallest per-feature p-value of the latest windows.",
                "none",
                query(f"min(infertap_detector_drift_p_value{{{feat}}})", instant=True),
                steps=[(None, "red"), (0.05, "green")],
            )
        )
        .with_panel(
            single(
                "Windows / min",
                "Windows judged per minute, all detectors.",
                "none",
                query(f"sum(rate(infertap_detector_windows_evaluated_total{{{sel}}}[{RATE}])) * 60"),
            )
        )
        .with_panel(
            heatmap.Panel()
            .title("Per-feature p-value")
            .datasource(DS)
            .span(24)
            .height(9)
            .description(
                "Latest p-value of each feature's drift test over time; dark cells are small p-values (drift)."
            )
            .calculate(False)
            .color(
                heatmap.HeatmapColorOptions()
                .mode(HeatmapColorMode.SCHEME)
                .scheme("RdYlGn")
                .scale(HeatmapColorScale.LINEAR)
                .min(0)
                .max(1)
                .steps(64)
            )
            # one row per series (feature); no `le` de-accumulation, so not the "heatmap" query format
            .rows_frame(heatmap.RowsHeatmapOptions().layout(HeatmapCellLayout.UNKNOWN))
            .filter_values(heatmap.FilterValueRange().le(-1))  # the default hides values <= 1e-9: the strongest drift
            .with_target(query(f"min by (feature) (infertap_detector_drift_p_value{{{feat}}})", "{{feature}}"))
        )
        .with_panel(
            statetimeline.Panel()
            .title("Drift flags")
            .datasource(DS)
            .span(12)
            .height(8)
            .description("1 when the latest window of a detector drifted ('_all') or a feature's test did.")
            .thresholds(thresholds([(None, "green"), (1, "red")]))
            .min(0)
            .max(1)
            .with_target(
                query(f"max by (detector, feature) (infertap_detector_drift{{{sel}}})", "{{detector}} {{feature}}")
            )
        )
        .with_panel(
            series(
                "Drift distance per feature",
                "The test statistic per feature (K-S distance, chi-square...).",
                "none",
                query(f"max by (feature) (infertap_detector_drift_distance{{{feat}}})", "{{feature}}"),
            )
        )
        .with_row(Row("Outliers and adversarial inputs"))
        .with_panel(
            series(
                "Outlier rate",
                "Share of evaluated rows flagged as outliers, per detector.",
                "percentunit",
                query(
                    f"sum by (detector) (rate(infertap_detector_outliers_total{{{sel}}}[{RATE}])) / "
                    f"sum by (detector) (rate(infertap_detector_rows_evaluated_total{{{sel}}}[{RATE}]))",
                    "{{detector}}",
                ),
            )
        )
        .with_panel(
            series(
                "Adversarial rate",
                "Share of evaluated rows flagged as adversarial, per detector.",
                "percentunit",
                query(
                    f"sum by (detector) (rate(infertap_detector_adversarial_total{{{sel}}}[{RATE}])) / "
                    f"sum by (detector) (rate(infertap_detector_rows_evaluated_total{{{sel}}}[{RATE}]))",
                    "{{detector}}",
                ),
            )
        )
        .with_panel(
            series(
                "Outlier score",
                "p50 and p95 of instance outlier scores.",
                "none",
                *[
                    query(
                        f"histogram_quantile({q}, sum by (le, detector) "
                        f"(rate(infertap_detector_outlier_score_bucket{{{sel}}}[{RATE}])))",
                        f"{{{{detector}}}} p{p}",
                    )
                    for q, p in ((0.5, 50), (0.95, 95))
                ],
            )
        )
        .with_row(Row("Workers"))
        .with_panel(
            series(
                "Consumer lag",
                "Records behind the high watermark, per detector (sum over partitions).",
                "none",
                query(f"sum by (detector) (infertap_detector_consumer_lag{{{sel}}})", "{{detector}}"),
            )
        )
        .with_panel(
            series(
                "Events consumed",
                "Records read per second, by outcome (used, ignored, rejected).",
                "ops",
                query(
                    f"sum by (detector, outcome) (rate(infertap_detector_events_consumed_total{{{sel}}}[{RATE}]))",
                    "{{detector}} {{outcome}}",
                ),
            )
        )
        .with_panel(
            series(
                "Detector time per window",
                "p50 and p95 of the backend's time per window.",
                "s",
                *[
                    query(
                        f"histogram_quantile({q}, sum by (le, detector) "
                        f"(rate(infertap_detector_predict_seconds_bucket{{{sel}}}[{RATE}])))",
                        f"{{{{detector}}}} p{p}",
                    )
                    for q, p in ((0.5, 50), (0.95, 95))
                ],
            )
        )
        .with_panel(
            series(
                "Detections published",
                "Detection events written, by sink and outcome.",
                "ops",
                query(
                    f"sum by (detector, sink, outcome) "
                    f"(rate(infertap_detector_detections_published_total{{{sel}}}[{RATE}]))",
                    "{{detector}} {{sink}} {{outcome}}",
                ),
            )
        )
    )


# --- explanations --------------------------------------------------------------------------


def explanations() -> Dashboard:
    sel = 'inference_service=~"$inference_service", explainer=~"$explainer"'
    return (
        dashboard(
            "infertap-explanations",
            "infertap / Explanations",
            "Explainer servers: explain latency and errors, and which features drive the model's answers.",
        )
        .with_variable(datasource_variable())
        .with_variable(label_variable("inference_service", "InferenceService", "infertap_explainer_requests_total"))
        .with_variable(
            label_variable(
                "explainer", "Explainer", "infertap_explainer_requests_total", 'inference_service=~"$inference_service"'
            )
        )
        .with_row(Row("Requests"))
        .with_panel(
            single(
                "Explanations / s",
                "Instances explained per second.",
                "ops",
                query(f"sum(rate(infertap_explainer_instances_total{{{sel}}}[{RATE}]))"),
            )
        )
        .with_panel(
            single(
                "p95 explain latency",
                "95th percentile of explain request latency, all backends.",
                "s",
                query(
                    f"histogram_quantile(0.95, sum by (le) (rate(infertap_explainer_explain_seconds_bucket{{{sel}}}[{RATE}])))"
                ),
            )
        )
        .with_panel(
            single(
                "Error ratio",
                "Share of explain requests answered with a non-2xx status.",
                "percentunit",
                query(
                    f'sum(rate(infertap_explainer_requests_total{{{sel}, code!~"2.."}}[{RATE}])) / '
                    f"sum(rate(infertap_explainer_requests_total{{{sel}}}[{RATE}]))"
                ),
                steps=[(None, "green"), (0.01, "orange"), (0.05, "red")],
            )
        )
        .with_panel(
            single(
                "Features tracked",
                "Features with a mean |attribution| series.",
                "none",
                query(f"count(count by (feature) (infertap_explainer_mean_abs_attribution{{{sel}}}))", instant=True),
            )
        )
        .with_panel(
            series(
                "Explain latency",
                "p50, p95 and p99 per backend.",
                "s",
                *[
                    query(
                        f"histogram_quantile({q}, sum by (le, explainer) "
                        f"(rate(infertap_explainer_explain_seconds_bucket{{{sel}}}[{RATE}])))",
                        f"{{{{explainer}}}} p{p}",
                    )
                    for q, p in ((0.5, 50), (0.95, 95), (0.99, 99))
                ],
            )
        )
        .with_panel(
            series(
                "Requests and errors",
                "Explain requests by HTTP status, and failed explanations by reason.",
                "reqps",
                query(
                    f"sum by (explainer, code) (rate(infertap_explainer_requests_total{{{sel}}}[{RATE}]))",
                    "{{explainer}} {{code}}",
                ),
                query(
                    f"sum by (explainer, reason) (rate(infertap_explainer_errors_total{{{sel}}}[{RATE}]))",
                    "{{explainer}} error: {{reason}}",
                ),
            )
        )
        .with_row(Row("Attributions"))
        .with_panel(
            bargauge.Panel()
            .title("Top features by mean |attribution|")
            .datasource(DS)
            .span(12)
            .height(10)
            .description("Running mean of the absolute attribution per feature over every instance explained (top 10).")
            .orientation(VizOrientation.HORIZONTAL)
            .display_mode(BarGaugeDisplayMode.GRADIENT)
            .min(0)
            .with_target(
                query(
                    f"topk(10, max by (feature) (infertap_explainer_mean_abs_attribution{{{sel}}}))",
                    "{{feature}}",
                    instant=True,
                )
            )
        )
        .with_panel(
            series(
                "Mean |attribution| over time",
                "Per feature; a change of shape is attribution drift.",
                "none",
                query(f"max by (feature) (infertap_explainer_mean_abs_attribution{{{sel}}})", "{{feature}}"),
            )
        )
        .with_row(Row("Text and LLM explanations"))
        .with_panel(
            bargauge.Panel()
            .title("Top tokens by mean |attribution|")
            .datasource(DS)
            .span(12)
            .height(10)
            .description(
                "Text classifiers' explainers: running mean |attribution| of the tokens with the largest one "
                "(each explainer exports its top --token-metric-top-k tokens, 20 by default, so the label set is bounded). "
                "The texts themselves are in infertap report."
            )
            .orientation(VizOrientation.HORIZONTAL)
            .display_mode(BarGaugeDisplayMode.GRADIENT)
            .min(0)
            .with_target(
                query(
                    f"topk(10, max by (token) (infertap_explainer_token_mean_abs_attribution{{{sel}}}))",
                    "{{token}}",
                    instant=True,
                )
            )
        )
        .with_panel(
            series(
                "Prompt attribution share by role",
                "LLM explainers: running mean share of |attribution| that the prompt's system, user, assistant ... "
                "segments got; a system prompt losing its share means completions stopped following it.",
                "percentunit",
                query(f"max by (role) (infertap_explainer_role_attribution_share{{{sel}}})", "{{role}}"),
            )
        )
        .with_row(Row("Predictor calls (black-box explainers)"))
        .with_panel(
            series(
                "Predictor traffic",
                "Requests and rows the explainers sent to the predictor.",
                "ops",
                query(
                    f"sum by (explainer) (rate(infertap_explainer_predictor_requests_total{{{sel}}}[{RATE}]))",
                    "{{explainer}} requests",
                ),
                query(
                    f"sum by (explainer) (rate(infertap_explainer_predictor_rows_total{{{sel}}}[{RATE}]))",
                    "{{explainer}} rows",
                ),
            )
        )
        .with_panel(
            series(
                "Predictor latency",
                "p95 of the explainers' requests to the predictor.",
                "s",
                query(
                    f"histogram_quantile(0.95, sum by (le, explainer) "
                    f"(rate(infertap_explainer_predictor_seconds_bucket{{{sel}}}[{RATE}])))",
                    "{{explainer}} p95",
                ),
            )
        )
    )


# --- LLM serving ---------------------------------------------------------------------------


def llm() -> Dashboard:
    """OpenAI-compatible traffic through the logger sidecars (sidecar/llm_metrics.py, sidecar/redact.py)."""
    sel = 'inference_service=~"$inference_service", model=~"$model"'
    req = f"infertap_gen_ai_server_requests_total{{{sel}}}"
    failed = f'infertap_gen_ai_server_requests_total{{{sel}, code=~"[45].."}}'
    tokens = f"infertap_gen_ai_client_token_usage_total{{{sel}}}"
    per_s = "suffix: tok/s"
    output = f'infertap_gen_ai_client_token_usage_total{{{sel}, gen_ai_token_type="output"}}'
    cost = f"infertap_gen_ai_client_cost_usd_total{{{sel}}}"
    ttft = f"infertap_gen_ai_server_time_to_first_token_seconds_bucket{{{sel}}}"
    tpot = f"infertap_gen_ai_server_time_per_output_token_seconds_bucket{{{sel}}}"
    duration = f"infertap_gen_ai_server_request_duration_seconds_bucket{{{sel}}}"
    redactions = 'infertap_tap_redactions_total{inference_service=~"$inference_service"}'

    def error_rate(by: str = "") -> str:
        # the failed series `or` every series times 0: the rate is 0, not "no data", while nothing fails
        grouping = f" by ({by})" if by else ""
        return (
            f"sum{grouping} (rate({failed}[{RATE}]) or 0 * rate({req}[{RATE}])) / sum{grouping} (rate({req}[{RATE}]))"
        )

    def quantiles(bucket: str) -> list[Dataquery]:
        return [
            query(f"histogram_quantile({q}, sum by (le, model) (rate({bucket}[{RATE}])))", f"{{{{model}}}} p{p}")
            for q, p in ((0.5, 50), (0.99, 99))
        ]

    return (
        dashboard(
            "infertap-llm",
            "infertap / LLM serving",
            "OpenAI-compatible calls through the logger sidecars: time to first token, time per output token, "
            "tokens, finish reasons, errors, cost and redactions (GenAI semantic-convention metrics).",
        )
        .with_variable(datasource_variable())
        .with_variable(label_variable("inference_service", "InferenceService", "infertap_gen_ai_server_requests_total"))
        .with_variable(
            label_variable(
                "model", "Model", "infertap_gen_ai_server_requests_total", 'inference_service=~"$inference_service"'
            )
        )
        .with_row(Row("Overview"))
        .with_panel(
            single(
                "Requests per second",
                "OpenAI calls (chat, text completion, embeddings) per second, every model.",
                "reqps",
                query(f"sum(rate({req}[{RATE}]))"),
                w=4,
            )
        )
        .with_panel(
            single(
                "Error rate",
                "Share of OpenAI calls answered with a status of 400 or more.",
                "percentunit",
                query(error_rate()),
                w=4,
                steps=[(None, "green"), (0.01, "orange"), (0.05, "red")],
            )
        )
        .with_panel(
            single(
                "TTFT p99",
                "99th percentile of the time to first token of streamed answers, measured at the sidecar.",
                "s",
                query(f"histogram_quantile(0.99, sum by (le) (rate({ttft}[{RATE}])))"),
                w=4,
                steps=[(None, "green"), (1, "orange"), (2, "red")],
            )
        )
        .with_panel(
            single(
                "Output tokens / s",
                "Tokens generated per second, every model (runtime-reported or estimated).",
                per_s,
                query(f"sum(rate({output}[{RATE}]))"),
                w=4,
            )
        )
        .with_panel(
            single(
                "Cost (USD/h)",
                "Spend per hour at the current rate, from the price table (--llm-prices).",
                "currencyUSD",
                query(f"sum(rate({cost}[{RATE}])) * 3600"),
                w=4,
            )
        )
        .with_panel(
            single(
                "Redactions (range)",
                "Values redacted from logged bodies in the selected time range, every rule.",
                "none",
                query(f"sum(increase({redactions}[$__range]))", instant=True),
                w=4,
            )
        )
        .with_panel(
            series(
                "Request rate by operation",
                "OpenAI calls per second by GenAI operation (chat, text_completion, embeddings).",
                "reqps",
                query(
                    f"sum by (gen_ai_operation_name) (rate({req}[{RATE}]))",
                    "{{gen_ai_operation_name}}",
                ),
                w=8,
            )
        )
        .with_panel(
            series(
                "Requests by finish reason",
                "Calls per second by the first choice's finish reason (stop, length, tool_calls, "
                "client_disconnected, upstream_error, none...).",
                "reqps",
                query(
                    f"sum by (gen_ai_response_finish_reason) (rate({req}[{RATE}]))",
                    "{{gen_ai_response_finish_reason}}",
                ),
                w=8,
            )
        )
        .with_panel(
            series(
                "Error rate by model",
                "Share of calls answered with a status of 400 or more, per model.",
                "percentunit",
                query(error_rate("model"), "{{model}}"),
                w=8,
            )
        )
        .with_row(Row("Latency"))
        .with_panel(
            series(
                "Time to first token",
                "p50 and p99 per model of the time from the request's arrival at the sidecar to the first "
                "content chunk of a streamed answer (vLLM: vllm:time_to_first_token_seconds).",
                "s",
                *quantiles(ttft),
                w=8,
            )
        )
        .with_panel(
            series(
                "Time per output token",
                "p50 and p99 per model of the time per output token after the first, streamed answers "
                "(vLLM: vllm:inter_token_latency_seconds).",
                "s",
                *quantiles(tpot),
                w=8,
            )
        )
        .with_panel(
            series(
                "Request duration",
                "p50 and p99 per model from the request's arrival to the end of the answer, every OpenAI call.",
                "s",
                *quantiles(duration),
                w=8,
            )
        )
        .with_row(Row("Tokens and cost"))
        .with_panel(
            series(
                "Output tokens per second by model",
                "Tokens generated per second, per model.",
                per_s,
                query(f"sum by (model) (rate({output}[{RATE}]))", "{{model}}"),
                w=8,
            )
        )
        .with_panel(
            series(
                "Tokens by model and type",
                "Input (prompt) and output (completion) tokens per second, per model.",
                per_s,
                query(
                    f"sum by (model, gen_ai_token_type) (rate({tokens}[{RATE}]))",
                    "{{model}} {{gen_ai_token_type}}",
                ),
                w=8,
            )
        )
        .with_panel(
            series(
                "Cost by model (USD/h)",
                "Spend per hour per model at the current rate, input and output tokens together, "
                "for the models in the price table (--llm-prices MODEL=IN:OUT, USD per 1M tokens).",
                "currencyUSD",
                query(f"sum by (model) (rate({cost}[{RATE}])) * 3600", "{{model}}"),
                w=8,
            )
        )
        .with_row(Row("Redaction"))
        .with_panel(
            series(
                "Redactions by rule",
                "Values replaced by [REDACTED:<rule>] per second in logged bodies, before they are queued.",
                "ops",
                query(f"sum by (rule) (rate({redactions}[{RATE}]))", "{{rule}}"),
                w=24,
            )
        )
    )


# --- model quality -------------------------------------------------------------------------

#: the series a model-quality board's InferenceService and Detector variables list: any of these
#: workers (realised performance, CBPE/DLE, DataQuality) puts a service on the board
QUALITY_METRICS = "infertap_performance_metric|infertap_data_quality_share"


def union_variable(name: str, label: str, metrics: str, depends: str = "") -> QueryVariable:
    """A multi-valued variable over label_values of the series of several metrics (`a|b`); All means `.*`."""
    selector = f'{{__name__=~"{metrics}"{", " + depends if depends else ""}}}'
    return label_variable(name, label, selector)


def line_style(regexp: str, color: str | None = None, dash: bool = True) -> tuple[str, list[DynamicConfigValue]]:
    """An override for the series whose names match `regexp`: dashed, no fill, a fixed colour when given."""
    props = [DynamicConfigValue(id_val="custom.fillOpacity", value=0)]
    if dash:
        props.append(DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}))
    if color:
        props.append(DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": color}))
    return regexp, props


def model_quality() -> Dashboard:
    """Is the model still right: realised (labels joined) beside estimated (CBPE, DLE) performance, the
    labels' coverage and delay, the join's counters, data-quality violations
    (detectors/performance/gauges.py, metrics.py; detectors/estimate_metrics.py; detectors/quality/metrics.py)."""
    sel = 'inference_service=~"$inference_service", detector=~"$detector"'
    figure = f'{sel}, metric=~"$metric", class=~"$class"'
    performance = (
        series(
            "Performance: $metric",
            "The same figure's two lines per InferenceService: realised (from the labels joined by the performance "
            "worker) and estimated (CBPE or DLE, without labels), with the estimate's confidence band (lower, upper) "
            "and its alert thresholds (from the reference's chunks). class: _all (the whole window), _macro (the "
            "mean over classes) or a class; a binary CBPE judges its positive class. One panel per metric.",
            "none",
            query(
                f"max by (inference_service, kind, class) (infertap_performance_metric{{{figure}}})",
                "{{inference_service}} {{kind}} ({{class}})",
            ),
            query(
                f"max by (inference_service, class, bound) (infertap_performance_band{{{figure}}})",
                "{{inference_service}} band {{bound}} ({{class}})",
            ),
            query(
                f"max by (inference_service, class, bound) (infertap_performance_threshold{{{figure}}})",
                "{{inference_service}} threshold {{bound}} ({{class}})",
            ),
            min_val=None,
        )
        .repeat("metric")
        .repeat_direction("h")
        .max_per_row(2)
    )
    for regexp, props in (line_style(".* band .*", "#8ab8ff"), line_style(".* threshold .*", "red")):
        performance = performance.override_by_regexp(regexp, props)
    return (
        dashboard(
            "infertap-model-quality",
            "infertap / Model quality",
            "Is the model still right: realised performance from labels joined by request id beside the estimate "
            "without labels (CBPE, DLE), label coverage and delay, the feedback join, data-quality violations.",
        )
        .with_variable(datasource_variable())
        .with_variable(union_variable("inference_service", "InferenceService", QUALITY_METRICS))
        .with_variable(
            union_variable("detector", "Detector", QUALITY_METRICS, 'inference_service=~"$inference_service"')
        )
        .with_variable(
            label_variable("metric", "Metric", "infertap_performance_metric", 'inference_service=~"$inference_service"')
        )
        .with_variable(
            label_variable(
                "class",
                "Class",
                "infertap_performance_metric",
                'inference_service=~"$inference_service", metric=~"$metric"',
            )
        )
        .with_row(Row("Performance"))
        .with_panel(
            single(
                "Estimates outside thresholds",
                "Headline figures whose latest estimate lies outside its alert thresholds (infertap_performance_alert).",
                "none",
                query(f"sum(infertap_performance_alert{{{sel}}})", instant=True),
                steps=[(None, "green"), (1, "red")],
                w=4,
            )
        )
        .with_panel(
            single(
                "Lowest realised accuracy",
                "The lowest accuracy of the latest windows of labelled predictions, every InferenceService.",
                "percentunit",
                query(
                    f'min(infertap_performance_metric{{{sel}, kind="realised", metric="accuracy", class="_all"}})',
                    instant=True,
                ),
                w=4,
            )
        )
        .with_panel(
            single(
                "Labelled share",
                "Lowest share of predictions with a label, latest windows (labels that came back so far).",
                "percentunit",
                query(f"min(infertap_performance_labelled_share{{{sel}}})", instant=True),
                steps=[(None, "red"), (0.1, "orange"), (0.5, "green")],
                w=4,
            )
        )
        .with_panel(
            single(
                "Label delay p50",
                "Median time from prediction to label of the latest windows (largest of the services).",
                "s",
                query(f'max(infertap_performance_label_delay_seconds{{{sel}, quantile="0.5"}})', instant=True),
                w=4,
            )
        )
        .with_panel(
            single(
                "Windows of labels (range)",
                "Windows of labelled predictions the performance workers published in the selected time range.",
                "none",
                query(f"sum(increase(infertap_performance_windows_total{{{sel}}}[$__range]))", instant=True),
                w=4,
            )
        )
        .with_panel(
            single(
                "Unmatched labels (range)",
                "Labels that fell out of the join's state without their prediction (an id never logged) in the "
                "selected time range.",
                "none",
                query(
                    f'sum(increase(infertap_performance_evicted_total{{{sel}, kind="label"}}[$__range]))', instant=True
                ),
                steps=[(None, "green"), (1, "orange")],
                w=4,
            )
        )
        .with_panel(performance)
        .with_row(Row("Labels"))
        .with_panel(
            series(
                "Label coverage",
                "Share of the predictions in a window's span that have a label, per worker (latest window).",
                "percentunit",
                query(
                    f"max by (inference_service, detector) (infertap_performance_labelled_share{{{sel}}})",
                    "{{inference_service}} {{detector}}",
                ),
                w=8,
            )
        )
        .with_panel(
            series(
                "Label delay",
                "Label time minus prediction time, quantiles 0.5, 0.9 and 0.99 of the latest window.",
                "s",
                query(
                    f"max by (inference_service, quantile) (infertap_performance_label_delay_seconds{{{sel}}})",
                    "{{inference_service}} q{{quantile}}",
                ),
                w=8,
            )
        )
        .with_panel(
            series(
                "Waiting to be joined",
                "In the join's state: predictions awaiting a label, labels awaiting their prediction.",
                "none",
                query(
                    f"sum by (inference_service, kind) (infertap_performance_pending{{{sel}}})",
                    "{{inference_service}} {{kind}}",
                ),
                w=8,
            )
        )
        .with_panel(
            series(
                "Feedback by outcome",
                "Labels per second: joined (to their prediction), early (before it), duplicate (a second label: the "
                "first counts), rejected (dead-lettered); unmatched: fell out of the state unjoined, by kind "
                "(label: its id never seen; prediction: never labelled) and reason (age, count); records the "
                "worker dead-lettered, by reason.",
                "ops",
                query(
                    f"sum by (outcome) (rate(infertap_performance_labels_total{{{sel}}}[{RATE}]))",
                    "{{outcome}}",
                ),
                query(
                    f"sum by (kind, reason) (rate(infertap_performance_evicted_total{{{sel}}}[{RATE}]))",
                    "unmatched {{kind}} ({{reason}})",
                ),
                query(
                    f"sum by (reason) (rate(infertap_performance_dead_lettered_total{{{sel}}}[{RATE}]))",
                    "dead-lettered {{reason}}",
                ),
            )
        )
        .with_panel(
            series(
                "Predictions read by the join",
                "Logged responses per second: read (a new prediction), duplicate (its id seen), rejected "
                "(dead-lettered), ignored (requests, failed responses, no id); and the labelled predictions "
                "that went into published windows.",
                "ops",
                query(
                    f"sum by (outcome) (rate(infertap_performance_predictions_total{{{sel}}}[{RATE}]))",
                    "{{outcome}}",
                ),
                query(
                    f"sum(rate(infertap_performance_labelled_rows_total{{{sel}}}[{RATE}]))",
                    "labelled, in published windows",
                ),
            )
        )
        .with_row(Row("Data quality"))
        .with_panel(
            single(
                "Checks violated now",
                "(feature, check) pairs the latest window of a DataQuality detector violates.",
                "none",
                query(f"sum(infertap_data_quality_violation{{{sel}}})", instant=True),
                steps=[(None, "green"), (1, "red")],
                w=8,
            )
        )
        .with_panel(
            single(
                "Windows violated (range)",
                "Windows that violated any check in the selected time range.",
                "none",
                query(f"sum(increase(infertap_data_quality_violations_total{{{sel}}}[$__range]))", instant=True),
                steps=[(None, "green"), (1, "orange")],
                w=8,
            )
        )
        .with_panel(
            single(
                "Failed rows (range)",
                "Rows failing a check (violated or not) in the selected time range.",
                "none",
                query(f"sum(increase(infertap_data_quality_failed_rows_total{{{sel}}}[$__range]))", instant=True),
                w=8,
            )
        )
        .with_panel(
            statetimeline.Panel()
            .title("Violations by feature and check")
            .datasource(DS)
            .span(12)
            .height(8)
            .description(
                "1 while the latest window violates the check on the feature: missing, type, range, unseen, "
                "constant, empty; duplicate rows on _all."
            )
            .thresholds(thresholds([(None, "green"), (1, "red")]))
            .min(0)
            .max(1)
            .with_target(
                query(
                    f"max by (feature, check) (infertap_data_quality_violation{{{sel}}})",
                    "{{feature}} {{check}}",
                )
            )
        )
        .with_panel(
            series(
                "Failing share by feature and check",
                "Share of the latest window's rows failing a check (missing, type, range, unseen; duplicate on _all).",
                "percentunit",
                query(f"max by (feature, check) (infertap_data_quality_share{{{sel}}})", "{{feature}} {{check}}"),
            )
        )
        .with_panel(
            bargauge.Panel()
            .title("Violated windows by feature and check (range)")
            .datasource(DS)
            .span(12)
            .height(8)
            .description("Windows that violated each check in the selected time range, most first.")
            .orientation(VizOrientation.HORIZONTAL)
            .display_mode(BarGaugeDisplayMode.GRADIENT)
            .min(0)
            .with_target(
                query(
                    f"sort_desc(sum by (feature, check) "
                    f"(increase(infertap_data_quality_violations_total{{{sel}}}[$__range])))",
                    "{{feature}} {{check}}",
                    instant=True,
                )
            )
        )
        .with_panel(
            series(
                "Failed rows by feature and check",
                "Rows per second failing a check, violated or not.",
                "ops",
                query(
                    f"sum by (feature, check) (rate(infertap_data_quality_failed_rows_total{{{sel}}}[{RATE}]))",
                    "{{feature}} {{check}}",
                ),
            )
        )
    )


BOARDS = {
    "serving": serving,
    "logger": logger,
    "drift": drift,
    "explanations": explanations,
    "llm": llm,
    "model-quality": model_quality,
}


def build_all() -> dict[str, str]:
    """{file name: JSON text} of every dashboard."""
    return {f"infertap-{name}.json": encode(make()) for name, make in BOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true", help="compare with the files in --out; exit 1 if any differs")
    args = parser.parse_args(argv)
    built = build_all()
    if args.check:
        stale = [n for n, text in built.items() if not (args.out / n).exists() or (args.out / n).read_text() != text]
        for name in stale:
            print(f"stale: {args.out / name} (run dashboards/build.py)", file=sys.stderr)
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in built.items():
        (args.out / name).write_text(text)
        print(f"wrote {args.out / name} ({len(json.loads(text)['panels'])} panels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
