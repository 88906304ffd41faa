"""Topic names: every topic infertap reads or writes is named here, from the InferenceService.

`<isvc>-events` (the logger's request and response events), `<isvc>-detections`,
`<isvc>-explanations`, `<isvc>-feedback`, `<isvc>-deadletter`. Nothing else in the code
derives a topic name; a spec or flag that names a topic itself wins over these defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: What Kafka accepts as a topic name.
TOPIC_PATTERN = re.compile(r"^[A-Za-z0-9._\-]{1,249}$")


def check_topic(name: str) -> str:
    """`name` unchanged when Kafka takes it as a topic name; ValueError with a sentence otherwise."""
    if not TOPIC_PATTERN.match(name):
        raise ValueError(f"topic {name!r} must be 1-249 characters of letters, digits, '.', '_', '-'")
    return name


@dataclass(frozen=True)
class Topics:
    """The topics of one InferenceService (or of a detector that reads a topic of its own)."""

    isvc: str

    @property
    def events(self) -> str:
        """The logger's request and response CloudEvents."""
        return f"{self.isvc}-events"

    @property
    def detections(self) -> str:
        """Detector results, `io.infertap.detection.*`."""
        return f"{self.isvc}-detections"

    @property
    def explanations(self) -> str:
        """`io.infertap.explanation` events of the explainer's stream worker."""
        return f"{self.isvc}-explanations"

    @property
    def feedback(self) -> str:
        """`io.infertap.feedback`: ground truth for logged ids, one item a record keyed by the
        prediction's id (co-partitioned with `events`: `infertap.stream.feedback`)."""
        return f"{self.isvc}-feedback"

    @property
    def deadletter(self) -> str:
        """Records a reader could not use, with their original bodies."""
        return f"{self.isvc}-deadletter"


def topics(isvc: str) -> Topics:
    """The topics of the InferenceService `isvc`: `topics("iris").events == "iris-events"`."""
    if not isvc:
        raise ValueError("topic names need an InferenceService name")
    return Topics(isvc)
