"""The InferenceService annotations `infertap.io/redact` and `infertap.io/log-sample-rate`
reach the logger sidecar's settings (and its command line) through the planner."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import free_port

from infertap.sidecar.__main__ import parse_args
from infertap.stack.plan import PlanError, PlanOptions, make_plan
from infertap.stack.specs import load_files

SERVICE = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: llm
  annotations: {annotations}
spec:
  predictor:
    model:
      modelFormat: {{name: sklearn}}
      storageUri: m/model.joblib
    logger:
      url: kafka://127.0.0.1:{port}
"""


def plan_of(folder: Path, annotations: str):
    (folder / "m").mkdir(exist_ok=True)
    (folder / "m" / "model.joblib").write_bytes(b"x")
    path = folder / "spec.yaml"
    path.write_text(SERVICE.format(annotations=annotations, port=free_port()))
    return make_plan(load_files([path]).documents, PlanOptions(logger_port=free_port()))


def test_annotations_reach_the_sidecar(tmp_path):
    plan = plan_of(tmp_path, '{"infertap.io/redact": "true", "infertap.io/log-sample-rate": "0.1"}')
    [sidecar] = plan.by_role("logger")
    assert (sidecar.settings.redact, sidecar.settings.log_sample_rate) == ("all", 0.1)
    plan = plan_of(tmp_path, '{"infertap.io/redact": "false"}')
    [sidecar] = plan.by_role("logger")
    assert (sidecar.settings.redact, sidecar.settings.log_sample_rate) == ("none", 1.0)
    plan = plan_of(tmp_path, "{}")
    assert plan.by_role("logger")[0].settings.redact == "openai"  # the default: OpenAI endpoints only


@pytest.mark.parametrize("annotations", ['{"infertap.io/redact": "maybe"}', '{"infertap.io/log-sample-rate": "2"}'])
def test_bad_annotations_are_a_sentence(tmp_path, annotations):
    with pytest.raises(PlanError, match="metadata.annotations"):
        plan_of(tmp_path, annotations)


def test_flags():
    s = parse_args(
        ["--redact", "all", "--redact-patterns", "EMP-\\d+", "--log-sample-rate", "0.5", "--llm-prices", "m=0.1:0.4"]
    )
    assert (s.redact, s.redact_patterns, s.log_sample_rate, s.llm_prices) == (
        "all",
        ["EMP-\\d+"],
        0.5,
        {"m": "0.1:0.4"},
    )
