"""Fixtures of the hardening tests: the detector tests' Kafka and worker fixtures, reused."""

from __future__ import annotations

from tests.detectors.conftest import detector_yaml, kafka, start_detector  # noqa: F401 - fixtures
