"""A YAML alias bomb ("billion laughs") in a spec is refused with a sentence, in little memory (issue 19, finding 11).

`yaml.safe_load` expands aliases: 875 bytes of them under `spec.detector.params` grew
`infertap render` to 4.3 GB. The loader now refuses aliases. Each check runs in a child
under RLIMIT_AS of 1 GiB, so a regression fails with a MemoryError there instead of taking
the machine down.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import ROOT

LIMIT_BYTES = 1024**3
LEVELS = "abcdefghi"


def bomb_text() -> str:
    """A Detector whose params hold 9 levels of 9 aliases each: 9**9 (387 million) strings expanded."""
    lines = [
        "apiVersion: infertap.dev/v1alpha1",
        "kind: Detector",
        "metadata: {name: bomb}",
        "spec:",
        "  source: {inferenceService: sklearn-iris, events: request}",
        "  features: [{name: f0}]",
        "  detector:",
        "    name: ScipyKS",
        "    reference: models/sklearn-iris/reference.npy",
        "    params:",
        '      a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
    ]
    for prev, name in zip(LEVELS, LEVELS[1:], strict=False):
        lines.append(f"      {name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + "\n"


@pytest.fixture
def bomb(tmp_path: Path) -> Path:
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb_text())
    assert path.stat().st_size < 1024  # under 1 KiB on disk
    return path


# The limit is set by a small launcher that then execs the command, not by preexec_fn: a forked
# child's peak RSS starts at its parent's (pytest's, over a gigabyte late in a full run), while a
# child spawned without preexec_fn (vfork) measures only itself.
LAUNCH = (
    "import os, resource, sys; "
    f"resource.setrlimit(resource.RLIMIT_AS, ({LIMIT_BYTES}, {LIMIT_BYTES})); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def run_limited(args: list[str], timeout: float = 120) -> tuple[int, str, int]:
    """(exit code, stderr, the child's own peak RSS in KiB) of `args` run under RLIMIT_AS = 1 GiB."""
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    timer = threading.Timer(timeout, proc.kill)  # a hang fails the test instead of stalling the suite
    timer.start()
    try:
        err = proc.stderr.read()
        # wait4, not RUSAGE_CHILDREN: that maximum also covers every earlier child of this pytest process
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
        proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, err, usage.ru_maxrss


def test_the_loader_refuses_aliases_naming_file_and_line(bomb: Path):
    code = (
        "import sys\n"
        "from infertap.stack.specs import SpecError, load_file\n"
        "try:\n"
        "    load_file(sys.argv[1])\n"
        "except SpecError as err:\n"
        "    sys.exit(f'SpecError: {err}')\n"
        "sys.exit('loaded')\n"
    )
    rc, err, peak_kib = run_limited([sys.executable, "-c", code, str(bomb)])
    assert rc == 1 and err.startswith("SpecError: "), err[-2000:]
    assert f"{bomb}: not valid YAML (line 12" in err and "aliases are not allowed" in err and "*a" in err
    assert peak_kib < 512 * 1024, peak_kib


def test_infertap_render_of_a_billion_laughs_exits_2_with_a_sentence(bomb: Path):
    rc, err, peak_kib = run_limited([sys.executable, "-m", "infertap", "render", str(bomb)])
    assert rc == 2, err[-2000:]
    assert "MemoryError" not in err and "Traceback" not in err
    assert str(bomb) in err and "line 12" in err and "YAML aliases are not allowed in specs" in err
    assert peak_kib < 512 * 1024, peak_kib


def test_anchors_without_aliases_and_plain_specs_still_load(tmp_path: Path):
    from infertap.stack.specs import load_file

    path = tmp_path / "isvc.yaml"
    path.write_text(
        "apiVersion: serving.kserve.io/v1beta1\n"
        "kind: InferenceService\n"
        "metadata: {name: iris}\n"
        "spec:\n"
        "  predictor: &p\n"  # an anchor alone expands nothing
        "    model: {modelFormat: {name: sklearn}, storageUri: 'file://./models/sklearn-iris'}\n"
    )
    (doc,) = load_file(path).documents
    assert doc.spec.metadata.name == "iris"
