"""The reference side of benchmarks/cbpe_vs_nannyml.py: NannyML's CBPE on the same chunks.

Runs with `.venv-nannyml/bin/python` (NannyML 0.13.1 pins its own numpy and pandas, so it
cannot share infertap's venv), imports nothing of infertap:

    .venv-nannyml/bin/python benchmarks/nannyml_cbpe.py DIR

DIR holds `reference.parquet` and `analysis.parquet` (columns: the class probabilities
`p_<class>`, `y_pred`, `y_true`, `window`) and `config.json` (`problem`, `classes`,
`chunk_size`, `metrics`, `rounds`). It fits `nannyml.CBPE` on the reference, then estimates
each window of the analysis on its own (one chunk per call, as a worker judges one window at
a time), `rounds` times, and writes `nannyml.json`: per window the estimates and the fastest
round's seconds.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path


def run(folder: Path) -> None:
    import nannyml as nml
    import pandas as pd

    warnings.filterwarnings("ignore")
    config = json.loads((folder / "config.json").read_text())
    reference = pd.read_parquet(folder / "reference.parquet")
    analysis = pd.read_parquet(folder / "analysis.parquet")
    classes = [str(c) for c in config["classes"]]
    binary = config["problem"] == "binary"
    if not binary:  # multiclass: classes are the keys of y_pred_proba, compared with the labels as they are
        for frame in (reference, analysis):
            frame["y_true"] = frame["y_true"].astype(str)
            frame["y_pred"] = frame["y_pred"].astype(str)
    estimator = nml.CBPE(
        problem_type="classification_binary" if binary else "classification_multiclass",
        y_pred_proba=f"p_{classes[1]}" if binary else {c: f"p_{c}" for c in classes},
        y_pred="y_pred",
        y_true="y_true",
        metrics=config["metrics"],
        chunk_size=config["chunk_size"],
    )
    started = time.perf_counter()
    estimator.fit(reference)
    fit_seconds = time.perf_counter() - started
    windows = []
    for _, chunk in analysis.groupby("window", sort=True):
        data = chunk.drop(columns=["window", "y_true"])
        best = float("inf")
        for _ in range(config["rounds"]):
            started = time.perf_counter()
            result = estimator.estimate(data)
            best = min(best, time.perf_counter() - started)
        frame = result.filter(period="analysis").to_df()
        estimates = {m: float(frame[(m, "value")].iloc[0]) for m in config["metrics"]}
        windows.append({"seconds": best, "estimates": estimates})
    out = {
        "nannyml": nml.__version__,
        "fit_seconds": fit_seconds,
        "windows": windows,
    }
    (folder / "nannyml.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    run(Path(sys.argv[1]))
