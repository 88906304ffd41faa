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

VARIABLES = {"inference_service": ".*", "model": ".*", "detector": ".*", "explainer": ".*"}
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
            if {"_".join(m.split("_")[:2]) for m in [selector.split("{")[0]]} - stack.components():
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
