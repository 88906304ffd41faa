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
routes them (`plan.py` puts the explainer's own logger sidecar in between when it has a
`logger:` block).

KServe's other forms run too (its docs/samples/explanation):
- `explainer.alibi: {type, storageUri, config}` (the block KServe's CRD had until v0.12):
  `--explainer-type`, the saved explainer as `--explainer-uri` (KServe's folder holding
  `explainer.dill`, or alibi's `save_explainer` folder) and `config` as `--param` values.
- `explainer.art: {type: SquareAttack, config}`: infertap's SquareAttack backend (ART, extra
  `art`), `config` (`nb_classes`, `max_iter`, ...) as `--param` values; SquareAttack is the
  only ART type KServe defines, any other type is refused naming it.
- KServe's alibi explainer image as a custom container: `containers[0].args` with the
  explainer as a positional sub-command (`--model_name=income ... --storage_uri=/mnt/models
  AnchorTabular --threshold=0.9`, `env: STORAGE_URI`), translated by
  `infertap.explainers.kserve_args`; the model server's flags infertap has no use for are
  listed in a note.
A saved explainer is a pickle (dill), which runs code when loaded: it is loaded only when
the InferenceService opts in with the annotation `infertap.io/allow-pickle: "true"` (or
`--allow-pickle` in infertap's args); otherwise `up` refuses with a sentence naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from infertap.serving.settings import ServerSettings
from infertap.stack.processes import PlanError, ProcessSpec, resolve_storage, runner_command
from infertap.stack.specs.paths import spec_path

PATH_FIELDS = ("background", "storage_uri", "explainer_uri")
ALLOW_PICKLE_ANNOTATION = "infertap.io/allow-pickle"
#: KServe's ART explainer types (ARTExplainerType in pkg/apis/serving/v1beta1/explainer_art.go)
ART_TYPES = ("SquareAttack",)


@dataclass
class ExplainerForm:
    """infertap explainer flags from one of `spec.explainer`'s forms, the YAML path they came
    from (for sentences: `containers[0].args`, `alibi`, `art`), and notes for `up` to print."""

    args: list[str]
    where: str
    notes: list[str] = field(default_factory=list)


def explainer_args(spec: Any) -> list[str] | None:
    """`containers[0].args` as written, else the alibi block as infertap flags; None if neither.

    What `infertap render` reads (it keeps KServe's own forms, the art block included, for a
    KServe cluster); `up` and `fit` read `explainer_form`, which also runs KServe's forms here."""
    extra = spec.model_extra or {}
    containers = extra.get("containers") or []
    if containers and isinstance(containers[0], dict) and containers[0].get("args"):
        return [str(a) for a in containers[0]["args"]]
    form = explainer_form(spec) if isinstance(extra.get("alibi"), dict) else None
    return form.args if form is not None and form.where == "alibi" else None


def explainer_form(spec: Any) -> ExplainerForm | None:
    """`spec.explainer` as infertap explainer flags: `containers[0].args` (infertap's flags, or
    KServe's alibi image's positional form), else the `alibi` block, else the `art` block; None
    if none of them. PlanError for an ART type infertap does not run."""
    from infertap.explainers.kserve_args import kserve_alibi_args, param_value

    extra = spec.model_extra or {}
    containers = extra.get("containers") or []
    if containers and isinstance(containers[0], dict) and containers[0].get("args"):
        container = containers[0]
        env = {
            str(e["name"]): str(e["value"])
            for e in container.get("env") or []
            if isinstance(e, dict) and "name" in e and "value" in e
        }
        kserve = kserve_alibi_args([str(a) for a in container["args"]], env)
        form = ExplainerForm(kserve.args, "containers[0].args")
        if kserve.ignored:
            form.notes.append(
                "containers[0].args: KServe's alibi explainer arguments infertap's explainer has no use for, "
                f"ignored: {' '.join(kserve.ignored)}"
            )
        return form
    alibi = extra.get("alibi")
    if isinstance(alibi, dict) and alibi.get("type"):
        args = ["--explainer-type", str(alibi["type"])]
        if alibi.get("storageUri"):
            args += ["--explainer-uri", str(alibi["storageUri"])]
        for key, value in (alibi.get("config") or {}).items():
            args += ["--param", f"{key}={param_value(str(value))}"]
        return ExplainerForm(args, "alibi")
    art = extra.get("art")
    if isinstance(art, dict) and art.get("type"):
        kind = next((t for t in ART_TYPES if t.lower() == str(art["type"]).lower()), None)
        if kind is None:
            raise PlanError(
                f"spec.explainer.art.type: infertap runs ART's {', '.join(ART_TYPES)} locally, the only type "
                f"KServe's ART explainer has (got {art['type']!r})"
            )
        args = ["--explainer-type", kind]
        for key, value in (art.get("config") or {}).items():
            args += ["--param", f"{key}={param_value(str(value))}"]
        return ExplainerForm(args, "art")
    return None


def plan_explainer(
    doc, predictor: ProcessSpec, front: ProcessSpec, host: str, port: int, notes: list[str] | None = None
) -> ProcessSpec:
    """The explainer process for `doc`'s `spec.explainer`; PlanError names the YAML path on bad args,
    a pickled explainer without the opt-in, or a library the explainer needs that is not installed
    here. Sentences for `up` to print go to `notes`."""
    from infertap.explainers.__main__ import ArgsError, settings_from_args, validation_sentence
    from infertap.explainers.backends import backend_class
    from infertap.explainers.errors import ExplainerLoadError

    isvc = doc.spec
    where = f"{doc.where}: spec.explainer"
    try:
        form = explainer_form(isvc.spec.explainer)
    except PlanError as exc:
        raise PlanError(f"{doc.where}: {exc}") from None
    if form is None:
        raise PlanError(
            f"{where}: give containers[0].args with --explainer-type (infertap's explainer flags), "
            "e.g. args: [--explainer-type=KernelShap, --background=models/sklearn-iris/reference.npy], "
            "or KServe's alibi (type, storageUri, config) or art (type: SquareAttack) block"
        )
    at = f"{where}.{form.where}"
    if notes is not None:
        notes += [f"{where}.{note}" for note in form.notes]
    try:
        settings = settings_from_args(form.args, defaults={"name": isvc.name}, raise_errors=True)
    except ArgsError as exc:
        raise PlanError(f"{at}: {exc}") from None
    except ValidationError as exc:
        raise PlanError(f"{at}: {validation_sentence(exc)}") from None
    try:  # refuse before any child starts when the backend's library is not installed (e.g. alibi)
        backend = backend_class(settings.explainer_type)
    except ExplainerLoadError as exc:
        raise PlanError(f"{where}: {exc}") from None
    model = predictor.settings_as(ServerSettings).models[0]
    updates: dict[str, Any] = {
        "host": host,
        "http_port": port,
        "inference_service": isvc.name,
        "predictor_url": f"http://{front.address}",
        "predictor_model": settings.predictor_model or isvc.name,
    }
    if settings.storage_uri is None and backend.kind == "whitebox":
        updates["storage_uri"], updates["model_format"] = model.uri, settings.model_format or model.format
    for name in PATH_FIELDS:
        value = getattr(settings, name)
        if value and name not in updates:
            if name == "background" and value.endswith(".npz") and not _exists(value, doc.source.parent):
                raise PlanError(
                    f"{at} --background: {value} does not exist yet; "
                    f"run `infertap fit {doc.source}` first (or point it at rows in .npy)"
                )
            updates[name] = str(resolve_storage(value, doc.source.parent, f"{at} --{name.replace('_', '-')}"))
    if settings.explainer_uri and not settings.allow_pickle:
        opt_in = isvc.metadata.annotations.get(ALLOW_PICKLE_ANNOTATION, "").strip().lower()
        if opt_in not in ("true", "1", "yes"):
            raise PlanError(
                f"{at}: {updates['explainer_uri']} is a saved (pickled) explainer, which runs code when loaded, so "
                f'it is loaded only with the annotation {ALLOW_PICKLE_ANNOTATION}: "true" in metadata.annotations '
                "(give it if you trust the file)"
            )
        updates["allow_pickle"] = True
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
    return spec_path(value, yaml_dir).exists()


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
    try:
        form = explainer_form(isvc.spec.explainer) if isvc.spec.explainer is not None else None
    except PlanError as exc:
        raise PlanError(f"{doc.where}: {exc}") from None
    if form is None:
        return [f"{doc.where}: no spec.explainer to fit"]
    try:
        settings = settings_from_args(form.args, defaults={"name": isvc.name}, raise_errors=True)
    except ArgsError as exc:
        raise PlanError(f"{where}.{form.where}: {exc}") from None
    except ValidationError as exc:
        raise PlanError(f"{where}.{form.where}: {validation_sentence(exc)}") from None
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
