"""Every query of every dashboard panel returns data from a real Prometheus scraping a real stack."""

from __future__ import annotations

import json
import time

import pytest
from stack_support import (
    GRAFANA,
    dashboard_files,
    finite_values,
    panel_queries,
    panels,
    query,
    query_range,
    substitute,
)

VARIABLES = {
    "inference_service": ".*",
    "model": ".*",
    "detector": ".*",
    "explainer": ".*",
    "metric": ".*",
    "class": ".*",
}
QUERIES = panel_queries()


def _family(expr: str) -> set[str]:
    """The metric families (first two words: infertap_detector, infertap_logger...) an expression reads."""
    import re

    families = set()
    for metric in re.findall(r"\binfertap_[a-z_]+", expr):
        # adversarial metrics exist only where an adversarial detector runs
        families.add(
            "infertap_detector_adversarial"
            if metric.startswith("infertap_detector_adversarial")
            else "_".join(metric.split("_")[:2])
        )
    return families


@pytest.mark.parametrize("pq", QUERIES, ids=[q.id for q in QUERIES])
def test_panel_query_returns_data(stack, pq):
    missing = _family(pq.expr) - stack.components()
    if missing:
        pytest.fail(f"{', '.join(sorted(missing))} not running in the stack: {'; '.join(stack.notes)}")
    expr = substitute(pq.expr, VARIABLES)
    if pq.instant:
        result = query(stack.prometheus, expr.replace("[10m]", f"[{int(time.time() - stack.started) + 5}s]"))
    else:
        result = query_range(stack.prometheus, expr, stack.started - 5, time.time())
    assert finite_values(result), f"{pq.id}: no data for\n  {expr}"


def test_every_query_is_covered():
    """The parametrised test above sees every target of every panel (none lost by the walk)."""
    count = 0
    for path in dashboard_files():
        board = json.loads(path.read_text())
        count += sum(len(p.get("targets", [])) for p in panels(board))
    assert count == len(QUERIES) > 40


def test_template_variables_return_values(stack):
    """Each dashboard's label_values() variables list the labels of the running stack."""
    for path in dashboard_files():
        board = json.loads(path.read_text())
        for var in board["templating"]["list"]:
            if var["type"] != "query":
                continue
            q = var["query"]["query"]
            inner = q[len("label_values(") : -1]
            selector, _, label = inner.rpartition(",")
            if _family(selector) - stack.components():  # a name, or {__name__=~"a|b", ...}
                continue
            result = query(stack.prometheus, f"count by ({label.strip()}) ({substitute(selector, VARIABLES)})")
            assert result, f"{path.name}: variable {var['name']} has no values"


def test_report_from_prometheus(stack, tmp_path):
    """`infertap report` against the same Prometheus: the page holds the plots there is data for."""
    import subprocess
    import sys
    from html.parser import HTMLParser

    from stack_support import ROOT

    out = tmp_path / "report.html"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "infertap",
            "report",
            "iris",
            "--prometheus",
            stack.prometheus,
            "--minutes",
            "10",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert "requests served" in done.stdout

    class Captions(HTMLParser):
        found: list[str] = []
        inside = False

        def handle_starttag(self, tag, attrs):
            self.inside = tag == "figcaption"

        def handle_data(self, data):
            if self.inside:
                self.found.append(data)
                self.inside = False

    page = Captions()
    page.feed(out.read_text())
    assert "Requests per second" in page.found
    if stack.explainer:
        assert "Top features by mean |attribution|" in page.found
    if stack.detectors:
        assert "Per-feature drift p-value" in page.found


def _llm_panel(title: str) -> dict:
    board = json.loads((GRAFANA / "infertap-llm.json").read_text())
    found = [p for p in panels(board) if p.get("title") == title]
    assert len(found) == 1, f"infertap-llm: no single panel {title!r}"
    return found[0]


def _by_label(stack, title: str, label: str) -> dict[str, float]:
    """{label value: largest finite sample} of the LLM panel's first query over the test's traffic."""
    expr = substitute(_llm_panel(title)["targets"][0]["expr"], VARIABLES)
    out: dict[str, float] = {}
    for series in query_range(stack.prometheus, expr, stack.started - 5, time.time()):
        values = finite_values([series])
        if values:
            out[series["metric"].get(label, "")] = max(values)
    return out


def test_llm_board_follows_the_traffic(stack):
    """The LLM panels show what the traffic did, not only some data: the rejected call in the
    error rate (and none for the model that answered), the e-mail in the redactions, the price
    table in the cost, each finish reason and operation sent."""
    if not stack.llm:
        pytest.fail(f"no LLM sidecar in the stack: {'; '.join(stack.notes)}")
    errors = _by_label(stack, "Error rate by model", "model")
    assert errors.get("reject") == 1.0 and errors.get("echo") == 0.0, errors
    assert _by_label(stack, "Redactions by rule", "rule").get("email", 0) > 0
    cost = _by_label(stack, "Cost by model (USD/h)", "model")
    assert set(cost) == {"echo"} and cost["echo"] > 0, cost  # only the priced model costs
    reasons = _by_label(stack, "Requests by finish reason", "gen_ai_response_finish_reason")
    assert {"stop", "tool_calls", "none"} <= set(reasons), reasons
    operations = _by_label(stack, "Request rate by operation", "gen_ai_operation_name")
    assert {"chat", "text_completion"} <= set(operations), operations
    tokens = _by_label(stack, "Tokens by model and type", "gen_ai_token_type")
    assert tokens.get("input", 0) > 0 and tokens.get("output", 0) > 0, tokens
    ttft = _by_label(stack, "Time to first token", "model")
    assert "echo" in ttft and ttft["echo"] > 0, ttft  # streamed chats have a first token


def _panel(board: str, title: str) -> dict:
    found = [p for p in panels(json.loads((GRAFANA / f"infertap-{board}.json").read_text())) if p.get("title") == title]
    assert len(found) == 1, f"infertap-{board}: no single panel {title!r}"
    return found[0]


def _now(stack, board: str, title: str, ref: int = 0, **chosen: str) -> dict[tuple[str, ...], float]:
    """{values of the labels the panel's query groups by: latest sample} of a panel's query, with the
    variables `chosen` (the others All), as Grafana would draw the last point."""
    expr = substitute(_panel(board, title)["targets"][ref]["expr"], {**VARIABLES, **chosen})
    return {
        tuple(v for k, v in sorted(r["metric"].items())): float(r["value"][1]) for r in query(stack.prometheus, expr)
    }


def test_model_quality_board_follows_the_traffic(stack):
    """The model-quality panels show what the labelled service's traffic did: the realised accuracy of
    the latest window of labels (computed here from the answers and the labels sent) beside the CBPE
    estimate inside its band, both thresholds; the label delay the labels' times give; the planted
    data-quality faults on exactly their features and checks; the join's counters."""
    import quality_stack

    q = stack.quality
    if not q:
        pytest.fail(f"no labelled InferenceService in the stack: {'; '.join(stack.notes)}")
    isvc = {"inference_service": quality_stack.ISVC}
    accuracy = {**isvc, "metric": "accuracy", "class": "_all"}
    lines = _now(stack, "model-quality", "Performance: $metric", **accuracy)  # (class, isvc, kind)
    by_kind = {key[2]: value for key, value in lines.items()}
    assert set(by_kind) == {"realised", "estimated"}, lines
    assert by_kind["realised"] == pytest.approx(q.realised_accuracy(1))  # the second window of 20 labels
    band = {key[0]: v for key, v in _now(stack, "model-quality", "Performance: $metric", 1, **accuracy).items()}
    assert band["lower"] <= by_kind["estimated"] <= band["upper"], (band, by_kind)
    limits = {key[0]: v for key, v in _now(stack, "model-quality", "Performance: $metric", 2, **accuracy).items()}
    assert 0 < limits["lower"] < limits["upper"] <= 1, limits

    delay = {key[1]: v for key, v in _now(stack, "model-quality", "Label delay", **isvc).items()}  # (isvc, quantile)
    # labels timed 60 + 5 i seconds after the traffic: the second window's (i = 20..39) 160 to 255 s late
    assert 150 < delay["0.5"] < 270 and delay["0.5"] <= delay["0.9"] <= delay["0.99"], delay
    (share,) = _now(stack, "model-quality", "Label coverage", **isvc).values()
    assert 0 < share <= quality_stack.LABELLED / (quality_stack.CLEAN + quality_stack.NOISY) + 1e-9

    violated = _by_labels(stack, "Violations by feature and check", isvc)
    assert {k for k, v in violated.items() if v == 1} == {("petal_length", "range"), ("sepal_width", "type")}
    shares = _by_labels(stack, "Failing share by feature and check", isvc)
    assert shares[("sepal_width", "type")] == pytest.approx(len(quality_stack.TEXT_BEFORE) / quality_stack.WINDOW)
    # the counters (a counter that appears with its first value has no rate yet: read them as they are)
    sel = f'inference_service="{quality_stack.ISVC}"'
    rows = {
        (r["metric"]["feature"], r["metric"]["check"]): float(r["value"][1])
        for r in query(stack.prometheus, f"sum by (feature, check) (infertap_data_quality_failed_rows_total{{{sel}}})")
    }
    planted = {
        ("petal_length", "range"): len(quality_stack.FAR),
        ("sepal_width", "type"): len(quality_stack.TEXT_BEFORE),
    }
    assert rows == planted, rows
    labels = {
        r["metric"]["outcome"]: float(r["value"][1])
        for r in query(stack.prometheus, f"sum by (outcome) (infertap_performance_labels_total{{{sel}}})")
    }
    assert labels["joined"] == quality_stack.LABELLED and labels["duplicate"] == quality_stack.DUPLICATES, labels
    (ghosts,) = query(stack.prometheus, f'sum(infertap_performance_evicted_total{{{sel}, kind="label"}})')
    assert float(ghosts["value"][1]) == quality_stack.GHOSTS


def _by_labels(stack, title: str, chosen: dict[str, str]) -> dict[tuple[str, ...], float]:
    """{(feature, check): largest finite sample over the traffic} of a model-quality panel's first query."""
    expr = substitute(_panel("model-quality", title)["targets"][0]["expr"], {**VARIABLES, **chosen})
    out: dict[tuple[str, ...], float] = {}
    for series in query_range(stack.prometheus, expr, stack.started - 5, time.time()):
        values = finite_values([series])
        if values:
            out[(series["metric"]["feature"], series["metric"]["check"])] = max(values)
    return out
