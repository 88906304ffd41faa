"""Build KServe's alibi explainer artefact for the iris model, as KServe's samples' train.py does.

    python -m tests.stack.kserve_artefacts OUT_FOLDER MODELS_FOLDER

writes OUT_FOLDER/explainer.dill: an alibi AnchorTabular fitted on the iris reference rows and
pickled with dill, whose predictor (a function of this `__main__`, so pickled by value) the
explainer resets to the served model when it loads it. Run as a process: alibi stays out of
the test process, and the pickle names no test module.
"""

from __future__ import annotations

import sys
from pathlib import Path

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def build(out: Path, models: Path) -> Path:
    import dill
    import joblib
    import numpy as np
    from alibi.explainers import AnchorTabular

    model = joblib.load(models / "sklearn-iris" / "model.joblib")
    rows = np.load(models / "sklearn-iris" / "reference.npy")
    explainer = AnchorTabular(lambda x: model.predict(x), feature_names=IRIS_FEATURES, seed=0)
    explainer.fit(rows, disc_perc=(25, 50, 75))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "explainer.dill"
    with open(path, "wb") as fh:
        dill.dump(explainer, fh)
    return path


if __name__ == "__main__":
    print(build(Path(sys.argv[1]), Path(sys.argv[2])))
