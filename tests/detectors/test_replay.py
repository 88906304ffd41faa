"""`infertap detect SPEC --replay FILE`: the stream's path over a file's rows. A drift detector replayed on the
rows a real worker judged from the real broker writes the bodies that worker published; time windows carry
their span; bad files end in exit 2 with a sentence."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
import yaml

from infertap.detectors.replay import ReplayError, ReplaySettings, replay
from infertap.stack.specs.detector import Detector
from tests.conftest import ROOT, unique
from tests.detectors.conftest import body

FEATURES = ["a", "b", "c"]
#: what differs between a replay and the stream by necessity: where the rows were (offsets) and when
TRANSPORT = ("offsets", "window_start", "window_end")


def document(name: str, spec: dict) -> dict:
    return {"apiVersion": "infertap.dev/v1alpha1", "kind": "Detector", "metadata": {"name": name}, "spec": spec}


def write_spec(folder: Path, name: str, spec: dict) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document(name, spec), sort_keys=False))
    return path


def settings_of(path: Path):
    doc = Detector.model_validate(yaml.safe_load(path.read_text()))
    return doc.to_settings(path.parent)


def lines(data: bytes) -> list[dict]:
    return [orjson.loads(line) for line in data.splitlines() if line]


def without_transport(data: dict) -> dict:
    return {k: v for k, v in data.items() if k not in TRANSPORT}


def infertap(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "infertap", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.fixture
def drift_rows(tmp_path: Path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(5)
    np.save(tmp_path / "reference.npy", rng.normal(size=(500, 3)))
    rows = rng.normal(size=(150, 3))
    rows[50:100, 1] += 2.5  # the second window drifts on b
    return tmp_path / "reference.npy", rows


def test_drift_replay_writes_what_the_worker_publishes_for_the_same_rows(
    broker, kafka, detector_yaml, start_detector, drift_rows, tmp_path: Path
) -> None:
    reference, rows = drift_rows
    topic = unique("replay")
    kafka.create_topic(topic, 1)
    spec = {
        "source": {"topic": topic, "bootstrap": broker.bootstrap, "consumerGroup": unique("g")},
        "features": [{"name": f} for f in FEATURES],
        "detector": {"name": "ScipyKS", "reference": str(reference)},
        "window": {"size": 50},
        "outputs": {"topic": f"{topic}-detections", "deadLetterTopic": f"{topic}-dl"},
    }
    path = detector_yaml("ks", spec)
    start_detector(path)
    ids = kafka.send_rows(topic, rows)
    published = [body(e) for e in kafka.read(f"{topic}-detections", 3)]

    file = tmp_path / "rows.csv"
    pd.DataFrame({"id": ids, **{f: rows[:, j] for j, f in enumerate(FEATURES)}}).to_csv(file, index=False)
    out = tmp_path / "out.jsonl"
    done = infertap("detect", str(path), "--replay", str(file), "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert "replayed 150 rows" in done.stderr and "3 windows, 3 detections" in done.stderr
    replayed = lines(out.read_bytes())
    assert [r["type"] for r in replayed] == ["io.infertap.detection.drift"] * 3
    assert [r["subject"] for r in replayed] == ["ks"] * 3 and replayed[0]["detector"] == "ks"
    assert [without_transport(r["data"]) for r in replayed] == [without_transport(p) for p in published]
    assert [r["data"]["is_drift"] for r in replayed] == [False, True, False]
    assert replayed[1]["data"]["offsets"] == [{"topic": "rows.csv", "partition": 0, "first": 50, "last": 99}]


@pytest.mark.fast
def test_time_windows_name_their_span_and_close_at_the_end_of_the_file(drift_rows, tmp_path: Path) -> None:
    reference, rows = drift_rows
    path = write_spec(
        tmp_path,
        "timed",
        {
            "source": {"inferenceService": "toy"},
            "features": [{"name": f} for f in FEATURES],
            "detector": {"name": "ScipyKS", "reference": str(reference)},
            "window": {"duration": 10},
        },
    )
    start = 1_800_000_003.0  # 3 s into a 10 s window
    stamps = pd.to_datetime(start + np.arange(len(rows)) * 0.2, unit="s", utc=True)  # 30 s of rows
    frame = pd.DataFrame({f: rows[:, j] for j, f in enumerate(FEATURES)})
    frame["timestamp"] = stamps.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    file = tmp_path / "timed.parquet"
    frame.to_parquet(file)
    out = io.BytesIO()
    outcome = replay(settings_of(path), file, out, ReplaySettings())
    windows = [r["data"] for r in lines(out.getvalue())]
    assert outcome.windows == len(windows) == 4 and outcome.unjudged == 0  # the last one closed at the end
    assert [w["window"] for w in windows] == [
        {"start": "2027-01-15T08:00:00Z", "end": "2027-01-15T08:00:10Z"},
        {"start": "2027-01-15T08:00:10Z", "end": "2027-01-15T08:00:20Z"},
        {"start": "2027-01-15T08:00:20Z", "end": "2027-01-15T08:00:30Z"},
        {"start": "2027-01-15T08:00:30Z", "end": "2027-01-15T08:00:40Z"},
    ]
    assert [w["n"] for w in windows] == [35, 50, 50, 15]
    assert windows[0]["event_ids"][0] == "timed.parquet:0"


@pytest.mark.fast
def test_rows_with_missing_values_and_unknown_categories_go_the_decoders_way(tmp_path: Path) -> None:
    np.save(tmp_path / "reference.npy", np.random.default_rng(6).normal(size=(200, 2)))
    path = write_spec(
        tmp_path,
        "cats",
        {
            "source": {"inferenceService": "toy"},
            "features": [{"name": "x"}, {"name": "colour", "type": "categorical", "categories": ["red", "blue"]}],
            "detector": {"name": "ScipyKS", "reference": "reference.npy"},
            "window": {"size": 10},
        },
    )
    frame = pd.DataFrame({"x": np.arange(20.0), "colour": ["red", "blue"] * 10})
    frame.loc[3, "x"] = np.nan  # dropped (missingValues: drop), counted in `excluded`
    frame.loc[5, "colour"] = "green"  # not a category: rejected, as the worker dead-letters it
    file = tmp_path / "cats.csv"
    frame.to_csv(file, index=False)
    out = io.BytesIO()
    outcome = replay(settings_of(path), file, out)
    first = lines(out.getvalue())[0]["data"]
    assert first["n"] == 8 and first["excluded"] == {"failed_response": 0, "missing_value": 1}
    assert first["rejected"] == 1 and outcome.reasons == {"unknown_category": 1}
    assert "cats.csv:5" not in first["event_ids"] and "cats.csv:3" not in first["event_ids"]


@pytest.mark.fast
@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d: d / "absent.csv", "does not exist"),
        (lambda d: (d / "rows.txt").write_text("a,b,c\n1,2,3\n") and d / "rows.txt", "must be .csv or .parquet"),
        (lambda d: (d / "bad.parquet").write_bytes(b"not parquet") and d / "bad.parquet", "cannot be read as parquet"),
        (lambda d: (d / "two.csv").write_text("a,b\n1,2\n") and d / "two.csv", "has no column 'c'"),
        (lambda d: (d / "empty.csv").write_text("a,b,c\n") and d / "empty.csv", "holds no rows"),
    ],
)
def test_bad_files_are_one_sentence(make, words: str, drift_rows, tmp_path: Path) -> None:
    reference, _ = drift_rows
    path = write_spec(
        tmp_path,
        "bad",
        {
            "source": {"inferenceService": "toy"},
            "features": [{"name": f} for f in FEATURES],
            "detector": {"name": "ScipyKS", "reference": str(reference)},
            "window": {"size": 10},
        },
    )
    with pytest.raises(ReplayError, match=words):
        replay(settings_of(path), make(tmp_path), io.BytesIO())


def test_cli_exits_2_with_a_sentence(drift_rows, tmp_path: Path) -> None:
    reference, rows = drift_rows
    path = write_spec(
        tmp_path,
        "timed",
        {
            "source": {"inferenceService": "toy"},
            "features": [{"name": f} for f in FEATURES],
            "detector": {"name": "ScipyKS", "reference": str(reference)},
            "window": {"duration": 60},
        },
    )
    file = tmp_path / "rows.csv"
    pd.DataFrame(rows, columns=FEATURES).to_csv(file, index=False)
    done = infertap("detect", str(path), "--replay", str(file))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "has no 'timestamp' column: time windows (window.duration) need the events' times" in done.stderr
    assert done.stdout == ""
