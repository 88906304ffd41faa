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


# A small launcher sets the limit, runs the command as its own child and prints that child's
# peak RSS. Measuring a direct child of pytest does not work: exec keeps the high-water mark of
# the memory it replaces, and a child forked or vforked from pytest replaces pytest's (over a
# gigabyte late in a full run). The launcher's own memory is a few megabytes.
LAUNCH = (
    "import os, resource, subprocess, sys; "
    f"resource.setrlimit(resource.RLIMIT_AS, ({LIMIT_BYTES}, {LIMIT_BYTES})); "
    "child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL); "
    "_, status, usage = os.wait4(child.pid, 0); "
    "print(usage.ru_maxrss, flush=True); "
    "sys.exit(os.waitstatus_to_exitcode(status))"
)


def run_limited(args: list[str], timeout: float = 120) -> tuple[int, str, int]:
    """(exit code, stderr, the command's own peak RSS in KiB) of `args` run under RLIMIT_AS = 1 GiB."""
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)  # a hang fails the test instead of stalling the suite
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # the launcher and the command under it
        proc.communicate()
        raise
    return proc.returncode, err, int(out.strip().splitlines()[-1])


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
