"""The explainer of an InferenceService, as `infertap up` runs it.

KServe's v1beta1 schema has no explainer `model` block any more (its alibi explainer went
with the BSL change, kserve#3380), so infertap uses KServe's extension point for custom
explainers: `spec.explainer.containers[0].args` holds the flags of `python -m infertap.explainers`
(the image a cluster would run), e.g.

    explainer:
      containers:
        - name: kserve-container
          image: infertap/explainer:0.1.0
          args: ["--explainer-type=KernelShap", "--background=./models/sklearn-iris/background.npz"]

The same YAML applies on a KServe cluster, whose controller appends `--model_name`,
`--predictor_host` and `--http_port` (accepted as aliases). Locally, `up` fills what the
cluster would: the name, a port (8082, then the next free), and the predictor URL, which
is the logger sidecar when the predictor has one (so the explainer's own calls pass the
tap, which skips them by their `infertap-skip-logging` header) else the model server.
White-box explainers without `--storage-uri` explain the predictor's own model file;
relative paths are looked up beside the YAML file first. The logger's `explainer_url` is
set to the explainer, so `:explain` calls to the sidecar reach it, as KServe's ingress
routes them. The legacy `explainer.alibi: {type, storageUri, config}` block maps to
`--explainer-type`, a pickled `--explainer-uri` (which still needs `--allow-pickle` in
the args) and `--param` values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from infertap.serving.settings import ServerSettings
from infertap.stack.processes import PlanError, ProcessSpec, resolve_storage, runner_command

PATH_FIELDS = ("background", "storage_uri", "explainer_uri")


def explainer_args(spec: Any) -> list[str] | None:
    """The explainer flags from `spec.explainer` (containers args or the legacy alibi block); None if neither."""
    extra = spec.model_extra or {}
    containers = extra.get("containers") or []
    if containers and isinstance(containers[0], dict) and containers[0].get("args"):
        return [str(a) for a in containers[0]["args"]]
    alibi = extra.get("alibi")
    if isinstance(alibi, dict) and alibi.get("type"):
        args = ["--explainer-type", str(alibi["type"])]
        if alibi.get("storageUri"):
            args += ["--explainer-uri", str(alibi["storageUri"])]
        for key, value in (alibi.get("config") or {}).items():
            args += ["--param", f"{key}={value}"]
        return args
    return None


def plan_explainer(doc, predictor: ProcessSpec, front: ProcessSpec, host: str, port: int) -> ProcessSpec:
    """The explainer process for `doc`'s `spec.explainer`; PlanError names the YAML path on bad args."""
    from infertap.explainers.__main__ import ArgsError, settings_from_args, validation_sentence

    isvc = doc.spec
    where = f"{doc.where}: spec.explainer"
    args = explainer_args(isvc.spec.explainer)
    if args is None:
        raise PlanError(
            f"{where}: give containers[0].args with --explainer-type (infertap's explainer flags), "
            "e.g. args: [--explainer-type=KernelShap, --background=models/sklearn-iris/reference.npy]"
        )
    try:
        settings = settings_from_args(args, defaults={"name": isvc.name}, raise_errors=True)
    except ArgsError as exc:
        raise PlanError(f"{where}.containers[0].args: {exc}") from None
    except ValidationError as exc:
        raise PlanError(f"{where}.containers[0].args: {validation_sentence(exc)}") from None
    model = predictor.settings_as(ServerSettings).models[0]
    updates: dict[str, Any] = {
        "host": host,
        "http_port": port,
        "inference_service": isvc.name,
        "predictor_url": f"http://{front.address}",
        "predictor_model": settings.predictor_model or isvc.name,
    }
    if (
        settings.storage_uri is None
        and settings.explainer_type not in ("KernelShap", "PermutationShap")
        and not settings.explainer_type.startswith("Anchor")
    ):
        updates["storage_uri"], updates["model_format"] = model.uri, settings.model_format or model.format
    for field in PATH_FIELDS:
        value = getattr(settings, field)
        if value and field not in updates:
            if field == "background" and value.endswith(".npz") and not _exists(value, doc.source.parent):
                raise PlanError(
                    f"{where}.containers[0].args --background: {value} does not exist yet; "
                    f"run `infertap fit {doc.source}` first (or point it at rows in .npy)"
                )
            updates[field] = str(
                resolve_storage(value, doc.source.parent, f"{where}.containers[0].args --{field.replace('_', '-')}")
            )
    try:
        settings = settings.model_validate(settings.model_dump() | updates)
    except ValidationError as exc:
        raise PlanError(f"{where}: {exc}") from None
    argv, env = runner_command("explainer", settings)
    return ProcessSpec(
        name=f"{isvc.name}/explainer",
        role="explainer",
        host=host,
        port=port,
        argv=argv,
        env=env,
        ready_path="/v2/health/ready",
        settings=settings,
        inference_service=isvc.name,
        note=f"{settings.explainer_type} -> {settings.predictor_url}",
    )


def _exists(value: str, yaml_dir: Path) -> bool:
    raw = Path(value[len("file://") :] if value.startswith("file://") else value).expanduser()
    return raw.exists() if raw.is_absolute() else (yaml_dir / raw).exists() or (Path.cwd() / raw).exists()


def fit_explainer(doc, reference: str | None = None, size: int | None = None, progress=None) -> list[str]:
    """`infertap fit` for an InferenceService's explainer: write its `--background` `.npz`.

    Reference rows: `reference`, else `reference.npy` beside the predictor's model
    (storageUri folder). Output: the `--background` path of the args when it ends in
    `.npz`, else `background.npz` beside the model. Returns lines to print.
    """
    from infertap.explainers.__main__ import ArgsError, settings_from_args, validation_sentence
    from infertap.explainers.fit import fit_background

    isvc = doc.spec
    where = f"{doc.where}: spec.explainer"
    args = explainer_args(isvc.spec.explainer) if isvc.spec.explainer is not None else None
    if args is None:
        return [f"{doc.where}: no spec.explainer to fit"]
    try:
        settings = settings_from_args(args, defaults={"name": isvc.name}, raise_errors=True)
    except ArgsError as exc:
        raise PlanError(f"{where}.containers[0].args: {exc}") from None
    except ValidationError as exc:
        raise PlanError(f"{where}.containers[0].args: {validation_sentence(exc)}") from None
    found = isvc.spec.predictor.model_with_path()
    model_dir = None
    if found is not None and found[2].storage_uri:
        model_path = resolve_storage(found[2].storage_uri, doc.source.parent, f"{doc.where}: {found[1]}.storageUri")
        model_dir = model_path if model_path.is_dir() else model_path.parent
    if reference is None:
        if model_dir is None or not (model_dir / "reference.npy").exists():
            raise PlanError(f"{where}: no reference data: give --reference (rows as .npy or .csv)")
        reference = str(model_dir / "reference.npy")
    out = _fit_output(settings.background, doc.source.parent, model_dir, where)
    fit_background(settings.explainer_type, reference, out, size or 50, settings.feature_names, progress=progress)
    return [f"{isvc.name}/explainer ({settings.explainer_type}): wrote {out}"]


def _fit_output(background: str | None, yaml_dir: Path, model_dir: Path | None, where: str) -> Path:
    if background and background.endswith(".npz"):
        raw = Path(background[len("file://") :] if background.startswith("file://") else background).expanduser()
        if raw.is_absolute():
            return raw
        for base in (yaml_dir, Path.cwd()):
            if (base / raw).parent.exists():
                return (base / raw).resolve()
        return (Path.cwd() / raw).resolve()
    if model_dir is None:
        raise PlanError(f"{where}: say where the background goes: --background=PATH.npz in the args")
    return model_dir / "background.npz"
