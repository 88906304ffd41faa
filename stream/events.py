"""The CloudEvent types on infertap's topics (`type` attribute), one name each.

Inference events are KServe's (its agent's `pkg/logger`), so a real KServe agent's events
and ours read the same; everything infertap emits itself is `io.infertap.*`.
"""

from __future__ import annotations

#: A logged request / response (KServe's names). Both share the `id` of the request.
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
INFERENCE_TYPES = (REQUEST_TYPE, RESPONSE_TYPE)

#: A detector's result for one window, `io.infertap.detection.<kind>`.
DETECTION_PREFIX = "io.infertap.detection."
DRIFT_TYPE = DETECTION_PREFIX + "drift"
OUTLIER_TYPE = DETECTION_PREFIX + "outlier"
ADVERSARIAL_TYPE = DETECTION_PREFIX + "adversarial"
DETECTION_KINDS = ("drift", "outlier", "adversarial")
DETECTION_TYPES = (DRIFT_TYPE, OUTLIER_TYPE, ADVERSARIAL_TYPE)
#: A record a detector could not read, with its original body (on `<isvc>-deadletter`).
DEAD_LETTER_TYPE = DETECTION_PREFIX + "deadletter"

#: Feature attributions of one logged request (the explainer's stream worker).
EXPLANATION_TYPE = "io.infertap.explanation"
#: Second wave (same envelope, `subject` the InferenceService): ground truth for a logged
#: id, realised or estimated performance per window, data-quality results per window.
FEEDBACK_TYPE = "io.infertap.feedback"
PERFORMANCE_TYPE = "io.infertap.performance"
DATA_QUALITY_TYPE = "io.infertap.dataquality"


def detection_type(kind: str) -> str:
    """`io.infertap.detection.<kind>` for a detector kind (drift, outlier, adversarial)."""
    if kind not in DETECTION_KINDS:
        raise ValueError(f"detection kind {kind!r} is none of {', '.join(DETECTION_KINDS)}")
    return DETECTION_PREFIX + kind


def detection_kind(event_type: str) -> str | None:
    """The kind of a detection event type (`io.infertap.detection.drift` -> `drift`); None for other types."""
    if event_type in DETECTION_TYPES:
        return event_type[len(DETECTION_PREFIX) :]
    return None
