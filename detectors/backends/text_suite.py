"""Several text detectors on one window, sharing one embedding pass: `TextSuite`.

```yaml
detector:
  name: TextSuite
  reference: prompts.jsonl
  params:
    model: models/all-minilm-l6-v2          # shared by the members (as field, device, batch_size, max_tokens, seed, holdout)
    detectors:
      - {name: TextMMDDrift}
      - {name: TextClassifierDrift, params: {auc_threshold: 0.6}}
      - {name: TextDescriptorDrift}
      - {name: TextOOD, params: {quantile: 0.995}}
```

Every member judges the same window in the same process, and the embedder's window cache
(`infertap.detectors.text.embed`) hands each one the embeddings the first one computed; the
reference is embedded once at fit the same way. The drift members' verdicts are one drift
detection: `is_drift` when any member drifted, their features side by side
(`embedding_mmd`, `domain_classifier`, the descriptors), each member's own output under
`raw.members`, what moved under `raw.moved`. Each outlier member (TextOOD) publishes an
outlier detection of its own (`DetectionResult.companions`). Saved as one folder holding a
folder per member.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from infertap.detectors.backends.base import DetectorBackend
from infertap.detectors.backends.folder import read_manifest, write_manifest
from infertap.detectors.backends.text_base import TextBackend, TextParams, parse_params
from infertap.detectors.result import DetectionKind, DetectionResult

#: member parameters a suite passes on unless the member sets its own
SHARED = ("field", "model", "device", "batch_size", "max_tokens", "threads", "holdout", "seed", "max_reference")
MEMBERS = ("TextMMDDrift", "TextClassifierDrift", "TextDescriptorDrift", "TextOOD")


class MemberSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description=f"One of {', '.join(MEMBERS)}.")
    params: dict[str, Any] = Field(default_factory=dict)


class SuiteParams(TextParams):
    detectors: list[MemberSpec] = Field(
        default_factory=lambda: [MemberSpec(name=name) for name in MEMBERS],
        description="The members; default all four with their defaults.",
    )


class TextSuite(DetectorBackend):
    """Text detectors sharing a window's embeddings; params: `SuiteParams`."""

    kind: ClassVar[DetectionKind] = "drift"
    frame: ClassVar[str] = "text"

    def __init__(self, feature_names: list[str], params: dict[str, Any]):
        super().__init__(list(feature_names), dict(params))
        self.p = parse_params("TextSuite", SuiteParams, self.params)
        if not self.p.detectors:
            raise ValueError("TextSuite: parameter 'detectors' names no detector")
        shared = {k: v for k, v in self.params.items() if k in SHARED}
        self.members: list[TextBackend] = []
        for i, member in enumerate(self.p.detectors):
            if member.name not in MEMBERS:
                raise ValueError(
                    f"TextSuite: detectors[{i}] is {member.name!r}; a member is one of {', '.join(MEMBERS)}"
                )
            from infertap.detectors.backends.registry import backend_class

            cls = backend_class(member.name)
            assert issubclass(cls, TextBackend)  # MEMBERS are text backends
            self.members.append(cls(self.feature_names, {**shared, **member.params}))
        self._on_progress: Any = None

    @property
    def on_progress(self) -> Any:
        return self._on_progress

    @on_progress.setter
    def on_progress(self, report: Any) -> None:  # `infertap fit` sets it; the first member embeds the reference
        self._on_progress = report
        for member in self.members:
            member.on_progress = report

    def reference_from(self, path: Path, features: Any) -> list[str]:
        return self.members[0].reference_from(path, features)

    def fit(self, x_ref: Any) -> None:
        for member in self.members:
            member.fit(x_ref)

    def fit_summary(self) -> dict[str, Any]:
        return {type(m).__name__: m.fit_summary() for m in self.members}

    def predict(self, x: Any) -> DetectionResult:
        results = [member.predict(x) for member in self.members]
        drift = [r for r in results if r.kind == "drift"]
        others = [r for r in results if r.kind != "drift"]
        features = [f for r in drift for f in r.features]
        p_vals = [r.p_val for r in drift if r.p_val is not None]
        return DetectionResult(
            kind="drift",
            detector="TextSuite",
            n=results[0].n,
            is_drift=any(bool(r.is_drift) for r in drift) if drift else None,
            p_val=min(p_vals) if p_vals else None,
            features=features,
            raw={
                "moved": [f.name for f in features if f.is_drift],
                "members": {r.detector: {"is_drift": r.is_drift, "p_val": r.p_val, **r.raw} for r in drift},
            },
            companions=others,
        )

    def save(self, path: Path) -> None:
        path = Path(path)
        names = []
        for i, member in enumerate(self.members):
            name = f"member-{i}-{type(member).__name__}"
            member.save(path / name)
            names.append(name)
        write_manifest(path, "TextSuite", self.feature_names, self.params, members=names)

    def load(self, path: Path) -> None:
        manifest = read_manifest(Path(path)) or {}
        names = manifest.get("members") or []
        if len(names) != len(self.members):
            raise ValueError(f"{path}: the folder holds {len(names)} members, the parameters name {len(self.members)}")
        for member, name in zip(self.members, names, strict=True):
            member.load(Path(path) / name)
