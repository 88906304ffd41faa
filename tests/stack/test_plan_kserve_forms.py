"""The plan `up` makes of KServe's explainer and transformer forms (issue 14); no process starts.

The forms run for real in test_up_kserve_forms.py; these check the translation and the
sentences of the cases that do not run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from infertap.explainers.kserve_args import kserve_alibi_args
from infertap.stack.plan import PlanError, PlanOptions, component_logger, make_plan
from infertap.stack.specs import load_files

pytestmark = pytest.mark.fast

OPTIONS = PlanOptions(predictor_port=0, logger_port=0, explainer_port=0, start_broker=False)


def plan_of(tmp_path: Path, spec: str, models_dir: Path):
    path = tmp_path / "isvc.yaml"
    path.write_text(
        f"""
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
spec:
  predictor:
    logger: {{url: "file://{tmp_path}/events.jsonl"}}
    model:
      modelFormat: {{name: sklearn}}
      storageUri: file://{models_dir / "sklearn-iris"}
{spec}"""
    )
    return make_plan(load_files([path]).documents, OPTIONS)


def test_kserves_alibi_image_args_become_infertap_flags():
    kserve = kserve_alibi_args(
        [
            "--model_name=income",
            "--http_port",
            "8080",
            "--predictor_host=income-predictor.default",
            "--grpc_port=8081",
            "--storage_uri=/mnt/models",
            "AnchorText",
            "----use_unk=false",
            "--sample_proba=0.5",
            "--use_similarity_proba",
            "True",
            "--p_sample=0.2",
        ],
        {"STORAGE_URI": "/data/explainer"},
    )
    assert kserve.args == [
        "--explainer-type=AnchorText",
        "--name=income",
        "--http-port=8080",
        "--predictor-url=income-predictor.default",
        "--explainer-uri=/data/explainer",
        "--param",
        "sample_proba=0.5",
        "--param",
        "use_similarity_proba=true",
    ]
    # what KServe's parse_known_args drops: the model server's flags infertap has no use for, the
    # documented `----use_unk` typo, and an AnchorImages flag under AnchorText
    assert kserve.ignored == ["--grpc_port=8081", "----use_unk=false", "--p_sample=0.2"]
    own = ["--explainer-type=KernelShap", "--background=x.npy"]
    assert kserve_alibi_args(own).args == own and not kserve_alibi_args(own).translated


def test_an_art_type_infertap_does_not_run_is_named(tmp_path, models_dir):
    with pytest.raises(PlanError) as err:
        plan_of(tmp_path, "  explainer:\n    art: {type: FastGradientMethod}\n", models_dir)
    assert str(err.value).endswith(
        "spec.explainer.art.type: infertap runs ART's SquareAttack locally, the only type KServe's ART explainer "
        "has (got 'FastGradientMethod')"
    )


def test_the_art_block_plans_square_attack_with_its_config(tmp_path, models_dir):
    plan = plan_of(
        tmp_path, '  explainer:\n    art:\n      type: squareattack\n      config: {nb_classes: "3"}\n', models_dir
    )
    [explainer] = plan.by_role("explainer")
    assert explainer.settings.explainer_type == "SquareAttack" and explainer.settings.params == {"nb_classes": 3}
    assert explainer.settings.storage_uri is None  # a black box: it calls the predictor


def test_explain_routing_and_the_component_loggers(tmp_path, models_dir):
    plan = plan_of(
        tmp_path,
        f"""  explainer:
    logger: {{url: "file://{tmp_path}/explain.jsonl", mode: request}}
    containers: [{{name: c, image: x, args: [--explainer-type=KernelShap, "--background={models_dir / "sklearn-iris" / "reference.npy"}"]}}]
""",
        models_dir,
    )
    predictor_logger, explainer_logger = component_logger(plan.processes), component_logger(plan.processes, "explainer")
    [explainer] = plan.by_role("explainer")
    assert predictor_logger is not None and explainer_logger is not None
    assert explainer_logger.name == "iris/explainer-logger" and explainer_logger.settings.log_mode == "request"
    assert explainer_logger.settings.component_port == explainer.port  # in front of the explainer
    assert explainer_logger.settings.explainer_url is None
    # the predictor's sidecar routes explain calls to the explainer's sidecar; the explainer calls
    # the predictor through the predictor's sidecar (its own calls skipped there by header)
    assert predictor_logger.settings.explainer_url == f"http://{explainer_logger.address}"
    assert explainer.settings.predictor_url == f"http://{predictor_logger.address}"
    assert [p.name for p in plan.processes] == [
        "iris/predictor",
        "iris/logger",
        "iris/explainer",
        "iris/explainer-logger",
    ]


@pytest.mark.parametrize(
    ("container", "why"),
    [
        ("{name: c, image: kserve/image-transformer:latest}", "gives no command, only an image, which cannot run"),
        (
            "{name: c, image: x, command: [python, -m, no_such_transformer_module]}",
            "command python -m no_such_transformer_module: no module 'no_such_transformer_module' beside the YAML",
        ),
        ("{name: c, image: x, command: [no-such-program-here]}", "command 'no-such-program-here' is not found"),
    ],
)
def test_a_transformer_that_cannot_run_here_is_skipped_with_one_line(tmp_path, models_dir, container, why):
    plan = plan_of(tmp_path, f"  transformer:\n    logger: {{}}\n    containers: [{container}]\n", models_dir)
    assert plan.by_role("transformer") == [] and [p.name for p in plan.by_role("logger")] == ["iris/logger"]
    [skipped, no_sidecar] = [n for n in plan.notes if "spec.transformer" in n]
    assert f"spec.transformer.containers[0]: {why}" in skipped
    assert skipped.endswith("the transformer is skipped and requests go to the predictor")
    assert no_sidecar.endswith("spec.transformer.logger: the transformer does not run locally; no sidecar for it")


def test_a_transformer_gets_the_arguments_kserve_appends_with_local_addresses(tmp_path, models_dir):
    (tmp_path / "my_transformer.py").write_text("")  # beside the YAML, as KServe's `python -m model`
    plan = plan_of(
        tmp_path,
        "  transformer:\n    containers:\n      - name: c\n        image: x\n"
        "        command: [python3, -m, my_transformer]\n"
        "        args: [--predictor_host, iris-predictor.default, --http_port=8080, --feast_url=x]\n"
        "        env: [{name: SCALE, value: '2'}]\n",
        models_dir,
    )
    [transformer] = plan.by_role("transformer")
    [logger] = plan.by_role("logger")
    assert transformer.argv[1:] == [
        "-m",
        "my_transformer",
        "--feast_url=x",
        "--model_name",
        "iris",
        "--predictor_host",
        logger.address,  # through the predictor's logger: it logs what the transformer sends
        "--http_port",
        str(transformer.port),
    ]
    assert transformer.env["SCALE"] == "2" and transformer.env["PYTHONPATH"].startswith(str(tmp_path.resolve()))
    assert transformer.ready_path is None  # no readinessProbe: ready when the port accepts connections


def test_infertap_flags_naming_an_anchor_type_are_not_taken_for_kserves_form():
    for own in (
        ["--name", "iris", "--explainer-type", "AnchorTabular", "--background", "x.npy"],
        ["--type=AnchorText", "--name=m"],
    ):
        kserve = kserve_alibi_args(own, {"STORAGE_URI": "/elsewhere"})
        assert kserve.args == own and not kserve.translated
