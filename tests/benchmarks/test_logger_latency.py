"""benchmarks.logger_latency: the bootstrap interval that says how far the ratio would move."""

from __future__ import annotations

import math

import pytest

from benchmarks.logger_latency import ratio_ci

pytestmark = pytest.mark.fast  # starts no process (make test-fast)


def test_the_interval_holds_the_ratio_and_narrows_with_steadier_rounds():
    steady = ratio_ci([0.15, 0.151, 0.149, 0.15, 0.152, 0.148] * 2, [0.1, 0.101, 0.099, 0.1, 0.1, 0.1] * 2)
    noisy = ratio_ci([0.15, 0.25, 0.10, 0.18, 0.30, 0.12] * 2, [0.1, 0.06, 0.14, 0.09, 0.12, 0.05] * 2)
    assert steady[0] <= 1.5 <= steady[1] and steady[1] - steady[0] < 0.1
    assert noisy[1] - noisy[0] > 5 * (steady[1] - steady[0])
    assert ratio_ci([0.1, 0.2, 0.3], [0.1, 0.2, 0.3], seed=1) == ratio_ci([0.1, 0.2, 0.3], [0.1, 0.2, 0.3], seed=1)


def test_too_few_rounds_or_no_positive_reference_gives_none():
    assert ratio_ci([0.1, 0.2], [0.1, 0.1]) is None
    assert ratio_ci([0.1, 0.2, 0.3, math.nan], [-0.1, -0.2, -0.05, 0.1]) is None
