"""CBPE per window of 5,000 rows: infertap's estimator against NannyML's CBPE on the same chunks.

Same run, same data: a classifier (scikit-learn, seeded, trained here on synthetic data whose
labels follow a fixed P(y|x)) gives the class probabilities of a labelled reference (50,000
rows) and of `--windows` (10) analysis windows of `--window` (5,000) rows whose inputs drift
further each window (covariate shift: its accuracy falls). Two problems: binary (a random
forest, whose probabilities need calibration) and multiclass (three classes, logistic
regression).

- ours: `infertap.detectors.backends.cbpe.CBPE` fitted on the reference (`fit_labelled`,
  chunk_size = the window), then `predict` on each window, `--rounds` (5) times, the fastest
  round counted: the call the detector process makes per window (calibration, the
  estimates, sampling errors, thresholds and the result object);
- reference: NannyML 0.13.1's `CBPE` (`benchmarks/nannyml_cbpe.py`, in `.venv-nannyml`, a
  child process: NannyML pins its own numpy and pandas) fitted on the same reference with the
  same chunk size and metrics, then `estimate` on each window on its own, as many rounds.

Reported per problem: seconds per window (median over windows) of each, `time_ratio` (ours /
NannyML's: goal at most 1), and the largest absolute difference between the two estimates
of any metric in any window (`max_abs_difference`: goal at most 0.01), with both estimates
and the realised figures per window. Binary metrics are the positive class's (NannyML's
binary definitions); multiclass ones macro averages.

Without `.venv-nannyml` (`make venv-nannyml`, or `--install-reference-only`), or with
`--skip-reference`, only our side runs and the JSON says why (`reference.skipped`).
Writes benchmarks/results/cbpe_vs_nannyml.json.

    python -m benchmarks.cbpe_vs_nannyml [--windows 10] [--window 5000] [--reference-rows 50000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
NANNYML_VENV = ROOT / ".venv-nannyml"
NANNYML_VERSION = "0.13.1"
#: NannyML 0.13.1 imports statsmodels without declaring it
NANNYML_PINS = (f"nannyml=={NANNYML_VERSION}", "statsmodels==0.15.0")
METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")


def ensure_nannyml_venv(venv: Path = NANNYML_VENV) -> Path:
    """Create (once) NannyML's virtual environment; returns its python."""
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    pins = "\n".join(NANNYML_PINS)
    if stamp.exists() and stamp.read_text() == pins and python.exists():
        return python
    print(f"installing the reference into {venv} ({', '.join(NANNYML_PINS)}) ...", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *NANNYML_PINS], check=True
    )
    stamp.write_text(pins)
    return python


# --- data ------------------------------------------------------------------------------------


def make_problem(problem: str, reference_rows: int, windows: int, window: int, seed: int = 0) -> dict[str, Any]:
    """A trained classifier's probabilities on a labelled reference and on drifting analysis windows."""
    rng = np.random.default_rng(seed)
    k = 2 if problem == "binary" else 3
    weights = rng.normal(size=(4, k))
    weights[3] *= 0.1

    def sample(n: int, drift: float) -> tuple[np.ndarray, np.ndarray]:
        # covariate shift: P(y|x) stays, the inputs close in on the origin, where the classes meet
        x = rng.normal(size=(n, 4)) * (1 - 0.6 * drift)
        x[:, 3] += 2 * drift  # and one input moves (the logits hardly depend on it)
        logits = 1.5 * x @ weights
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        y = (rng.random((n, 1)) > p.cumsum(axis=1)).sum(axis=1)
        return x, y

    if problem == "binary":
        from sklearn.ensemble import RandomForestClassifier

        model: Any = RandomForestClassifier(n_estimators=50, min_samples_leaf=5, random_state=seed, n_jobs=1)
    else:
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(max_iter=1000)
    x_train, y_train = sample(20_000, 0.0)
    model.fit(x_train, y_train)
    x_ref, y_ref = sample(reference_rows, 0.0)
    analysis = [sample(window, i / max(1, windows - 1)) for i in range(windows)]
    return {
        "k": k,
        "reference": (model.predict_proba(x_ref), y_ref),
        "windows": [(model.predict_proba(x), y) for x, y in analysis],
    }


def predicted(p: np.ndarray) -> np.ndarray:
    """The model's predicted class: p1 >= 0.5 (binary), the argmax (multiclass), as our CBPE reads it."""
    return (p[:, 1] >= 0.5).astype(int) if p.shape[1] == 2 else p.argmax(axis=1)


# --- ours ------------------------------------------------------------------------------------


def run_ours(data: dict[str, Any], window: int, rounds: int) -> dict[str, Any]:
    from infertap.detectors.backends.registry import create_backend

    k = data["k"]
    names = [f"p_{c}" for c in range(k)]
    backend: Any = create_backend("CBPE", names, {"chunk_size": window})
    started = time.perf_counter()
    backend.fit_labelled(*data["reference"])
    fit_seconds = time.perf_counter() - started
    judged = "_macro" if k > 2 else "1"
    out = []
    for p, y in data["windows"]:
        best = float("inf")
        for _ in range(rounds):
            started = time.perf_counter()
            result = backend.predict(p)
            best = min(best, time.perf_counter() - started)
        estimates = {m.name: m.value for m in result.metrics if m.klass in ("_all", judged)}
        realised = backend.realised(p, y)
        out.append(
            {
                "seconds": best,
                "estimates": estimates,
                "realised": {m: realised.get((m, "_all" if m == "accuracy" else judged)) for m in METRICS},
            }
        )
    return {"fit_seconds": fit_seconds, "windows": out, "calibrated": [c is not None for c in backend.calibrators]}


# --- NannyML (a child in its venv) --------------------------------------------------------------


def run_nannyml(python: Path, data: dict[str, Any], problem: str, window: int, rounds: int) -> dict[str, Any]:
    import pandas as pd

    k = data["k"]

    def frame(p: np.ndarray, y: np.ndarray, window_index: np.ndarray | int = 0) -> Any:
        columns = {f"p_{c}": p[:, c] for c in range(k)}
        return pd.DataFrame({**columns, "y_pred": predicted(p), "y_true": y, "window": window_index})

    with tempfile.TemporaryDirectory(prefix="cbpe-nannyml-") as tmp:
        folder = Path(tmp)
        frame(*data["reference"]).to_parquet(folder / "reference.parquet")
        analysis = pd.concat([frame(p, y, i) for i, (p, y) in enumerate(data["windows"])], ignore_index=True)
        analysis.to_parquet(folder / "analysis.parquet")
        config = {"problem": problem, "classes": list(range(k)), "chunk_size": window, "metrics": list(METRICS)}
        (folder / "config.json").write_text(json.dumps({**config, "rounds": rounds}))
        started = time.perf_counter()
        subprocess.run(
            [str(python), str(ROOT / "benchmarks" / "nannyml_cbpe.py"), str(folder)],
            check=True,
            # NannyML reports usage to segment.io unless told not to (and this machine reaches no internet)
            env={**os.environ, "PYTHONWARNINGS": "ignore", "NML_DISABLE_USAGE_LOGGING": "1"},
        )
        out = json.loads((folder / "nannyml.json").read_text())
        out["child_seconds"] = time.perf_counter() - started
        return out


# --- the figure ------------------------------------------------------------------------------


def compare(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Time ratio (medians per window) and the largest estimate difference, per metric and overall."""
    ours_s = statistics.median(w["seconds"] for w in ours["windows"])
    theirs_s = statistics.median(w["seconds"] for w in theirs["windows"])
    per_metric = {}
    for metric in METRICS:
        diffs = [
            abs(a["estimates"][metric] - b["estimates"][metric])
            for a, b in zip(ours["windows"], theirs["windows"], strict=True)
            if a["estimates"].get(metric) is not None and b["estimates"].get(metric) is not None
        ]
        per_metric[metric] = max(diffs) if diffs else None
    worst = max(v for v in per_metric.values() if v is not None)
    return {
        "seconds_per_window": {"infertap": ours_s, "nannyml": theirs_s},
        "time_ratio": ours_s / theirs_s,
        "max_abs_difference": worst,
        "max_abs_difference_per_metric": per_metric,
        "goal_no_slower": ours_s <= theirs_s,
        "goal_within_0.01": worst <= 0.01,
    }


def machine() -> dict[str, Any]:
    return {
        "hostname": os.uname().nodename,
        "cpus": os.cpu_count(),
        "platform": f"{os.uname().sysname}-{os.uname().release}-{os.uname().machine}",  # platform() runs uname -p
        "python": platform.python_version(),
        "loadavg_start": list(os.getloadavg()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cbpe_vs_nannyml", description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=10, help="analysis windows per problem")
    parser.add_argument("--window", type=int, default=5000, help="rows per window (the chunk size of both)")
    parser.add_argument("--reference-rows", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per window (the fastest counts)")
    parser.add_argument("--problems", default="binary,multiclass")
    parser.add_argument("--skip-reference", action="store_true", help="run ours only (the JSON says so)")
    parser.add_argument("--install-reference-only", action="store_true", help="create .venv-nannyml and exit")
    parser.add_argument("--out", type=Path, default=RESULTS / "cbpe_vs_nannyml.json")
    args = parser.parse_args(argv)
    if args.install_reference_only:
        ensure_nannyml_venv()
        return 0
    python = NANNYML_VENV / "bin" / "python"
    skipped = None
    if args.skip_reference:
        skipped = "--skip-reference"
    elif not (NANNYML_VENV / ".installed").exists() or not python.exists():
        skipped = f"no {NANNYML_VENV.name} (make venv-nannyml, or --install-reference-only)"
    report: dict[str, Any] = {
        "benchmark": "cbpe_vs_nannyml",
        "config": {
            "windows": args.windows,
            "window": args.window,
            "reference_rows": args.reference_rows,
            "rounds": args.rounds,
        },
        "machine": machine(),
        "reference": {"nannyml": NANNYML_VERSION, "skipped": skipped},
        "problems": {},
    }
    for problem in args.problems.split(","):
        data = make_problem(problem, args.reference_rows, args.windows, args.window)
        ours = run_ours(data, args.window, args.rounds)
        entry: dict[str, Any] = {"infertap": ours}
        if skipped is None:
            theirs = run_nannyml(python, data, problem, args.window, args.rounds)
            entry["nannyml"] = theirs
            entry["comparison"] = compare(ours, theirs)
        else:
            entry["seconds_per_window"] = {"infertap": statistics.median(w["seconds"] for w in ours["windows"])}
        report["problems"][problem] = entry
        summary = entry.get("comparison") or entry["seconds_per_window"]
        print(problem, json.dumps(summary), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
