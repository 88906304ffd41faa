"""Alert rules and scrape configs pass promtool's checks, and the rules' unit tests pass."""

from __future__ import annotations

import subprocess

import yaml
from stack_support import DASHBOARDS, PROMTOOL

PROM = DASHBOARDS / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=PROM, timeout=120)


def test_rules_check():
    done = promtool("check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_rules_unit_tests():
    tests = sorted(str(p.relative_to(PROM)) for p in (PROM / "tests").glob("*.yml"))
    assert tests
    done = promtool("test", "rules", *tests)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_unit_test():
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tested = set()
    for path in (PROM / "tests").glob("*.yml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            tested |= {case["alertname"] for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert alerts - tested == set(), f"alerts never seen firing in a unit test: {alerts - tested}"


def test_broken_rule_is_caught(tmp_path):
    """The check is real: a rule with a bad expression fails it."""
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n- name: x\n  rules:\n  - alert: Bad\n    expr: sum(rate(x[5m]) > \n")
    done = subprocess.run([PROMTOOL, "check", "rules", str(bad)], capture_output=True, text=True)
    assert done.returncode != 0


def test_local_scrape_config_check():
    done = promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_kubernetes_scrape_config_structure():
    """Debian's promtool is built without Kubernetes service discovery, so this fragment is
    checked structurally: keys of a scrape config, regexes that compile, the logger's path."""
    import re

    job = yaml.safe_load((PROM / "kubernetes-scrape.yml").read_text())["scrape_configs"][0]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    allowed = {"source_labels", "regex", "action", "target_label", "replacement"}
    for rule in job["relabel_configs"]:
        assert set(rule) <= allowed and rule["source_labels"]
        re.compile(rule.get("regex", "(.*)"))
        assert rule.get("action", "replace") in {"keep", "replace"}
        assert rule.get("target_label") != "component"  # our metrics carry it; it would become exported_component
    logger = [r for r in job["relabel_configs"] if r.get("target_label") == "__metrics_path__"]
    assert logger and logger[0]["replacement"] == "/infertap/metrics"
