"""`make demo`'s LLM part runs end to end: the real stack, the official openai client, Kafka read back."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import MODELS, ROOT


def test_the_llm_demo_runs_and_its_checks_pass():
    assert (MODELS / "tiny-llm" / "config.json").exists(), "make models builds models/tiny-llm"
    proc = subprocess.run(
        [sys.executable, "-m", "examples.llm_demo"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    # the demo's own checks passed: content, usage and TTFT per call, no personal data on the topic
    assert "found on the topic: none" in out and "llm demo done." in out, out[-3000:]
    for call in ("chat-stream-usage", "chat-stream", "chat-pii", "chat", "text", "wrong-model"):
        assert f"  {call} " in out, out[-3000:]
    assert "stopped every process the LLM demo started" in out
