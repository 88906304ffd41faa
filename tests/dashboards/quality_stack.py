"""The model-quality part of the dashboard tests' stack: a second InferenceService whose traffic gets
labels back, so the "Model quality" board's panels have data.

One logger sidecar (`iris-quality`) in front of the stack's model server, and three workers on its
topics: the realised-performance worker (labels joined by id), a CBPE detector (estimated
performance from the logged probabilities, fitted at start on iris rows the model scored) and a
DataQuality detector (range and type checks against the iris reference). The traffic: clean iris
rows, then noisy ones (the model errs, CBPE's estimate falls, values leave the reference range), two
rows with text in a number; labels for most of them minutes late, some twice, and labels for ids
never logged (unmatched). A module, not conftest, so the fixture and the tests import it by name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from stack_support import Proc, Target, free_port

from infertap.stack.plan import runner_command

ISVC = "iris-quality"
CLASSES = ["setosa", "versicolor", "virginica"]
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
PROBABILITIES = [f"p_{c}" for c in CLASSES]
WINDOW = 20  # rows per window of every worker: 60 predictions make three
CLEAN, NOISY = 30, 30
LABELLED = 50  # of the 60 predictions; the last ten stay unlabelled (coverage under 1)
DUPLICATES, GHOSTS = 5, 3
# The data-quality faults, all in the last full window of requests (positions 40-59; the two after it are
# never judged), so its gauges hold them whenever Prometheus scrapes: text in sepal_width sent before
# these predictions (requests the model answers with an error), petal lengths beyond the reference's range
TEXT_BEFORE = (50, 53)
FAR = (41, 45)
#: the series whose arrival in Prometheus says the traffic is all in
READY = (
    'sum(infertap_performance_windows_total{inference_service="iris-quality"}) >= 2',
    'sum(infertap_performance_labels_total{inference_service="iris-quality", outcome="duplicate"}) >= 5',
    'sum(infertap_performance_evicted_total{inference_service="iris-quality", kind="label"}) >= 3',
    'count(infertap_performance_band{inference_service="iris-quality"}) > 0',
    'sum(infertap_detector_windows_evaluated_total{inference_service="iris-quality", detector="CBPE"}) >= 3',
    'sum(infertap_data_quality_violations_total{inference_service="iris-quality"}) > 0',
)


@dataclass
class QualityStack:
    """The sidecar's URL, the workers' names, and (process, URL to wait for) of each child."""

    sidecar: str
    workers: list[str] = field(default_factory=list)
    children: list[tuple[Proc, str]] = field(default_factory=list)
    predicted: list[str] = field(default_factory=list)  # the model's class of each prediction sent, in order
    truth: list[str] = field(default_factory=list)  # the label of each (those past LABELLED never sent)

    def realised_accuracy(self, window: int) -> float:
        """The accuracy the performance worker's window `window` (0, 1, ...) must give: labels are
        joined in the order they were sent, so window k holds predictions k*WINDOW .. (k+1)*WINDOW-1."""
        span = range(window * WINDOW, (window + 1) * WINDOW)
        return sum(self.predicted[i] == self.truth[i] for i in span) / WINDOW


def _runner(component: str, settings: dict, log: Path) -> Proc:
    argv, env = runner_command(component, settings)
    return Proc(argv, log, env=env)


def _cbpe_reference(models_dir: Path, out: Path) -> Path:
    """The CBPE's labelled reference: the iris model's probabilities of the iris rows and their species."""
    import joblib
    import pandas as pd
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    order = np.random.default_rng(3).permutation(len(x))  # iris is sorted by species: chunks must mix them
    x, y = x[order], y[order]
    model = joblib.load(models_dir / "sklearn-iris" / "model.joblib")
    frame = pd.DataFrame(model.predict_proba(x), columns=PROBABILITIES)
    frame["species"] = [CLASSES[i] for i in y]
    frame.to_csv(out, index=False)
    return out


def start(
    broker: str, models_dir: Path, predictor_port: int, tmp: Path, procs: list[Proc], targets: list[Target]
) -> QualityStack:
    """Start the sidecar and the three workers (their processes appended to `procs`, their metrics to `targets`)."""
    from infertap.stack.broker import create_topics

    # both topics up front with one partition each: the performance worker joins by partition number
    create_topics(broker, [f"{ISVC}-events", f"{ISVC}-feedback"])
    port = free_port()
    sidecar = _runner(
        "logger",
        {
            "port": port,
            "component_port": predictor_port,
            "inference_service": ISVC,
            "log_url": [f"kafka://{broker}/{ISVC}-events"],
            "spool_dir": str(tmp / "quality-spool"),
            "feedback_task": "classification",
            "feedback_classes": CLASSES,
        },
        tmp / "quality-sidecar.log",
    )
    procs.append(sidecar)
    targets.append(Target("quality-logger", f"127.0.0.1:{port}", "/infertap/metrics"))
    base = {"inference_service": ISVC, "bootstrap": broker, "window": {"size": WINDOW}}
    workers = {
        "iris-quality-performance": (
            "performance",
            {**base, "params": {"task": "classification", "classes": CLASSES}, "state_dir": str(tmp / "perf-state")},
        ),
        "iris-quality-cbpe": (
            "detector",
            {
                **base,
                "detector": "CBPE",
                "events": "response",
                "features": [{"name": n} for n in PROBABILITIES],
                "params": {"target": "species", "classes": CLASSES},
                "reference": str(_cbpe_reference(models_dir, tmp / "cbpe-reference.csv")),
            },
        ),
        "iris-quality-dq": (
            "detector",
            {
                **base,
                "detector": "DataQuality",
                "events": "request",
                "features": [{"name": n} for n in FEATURES],
                "reference": str(models_dir / "sklearn-iris" / "reference.npy"),
            },
        ),
    }
    stack = QualityStack(
        f"http://127.0.0.1:{port}", list(workers), [(sidecar, f"http://127.0.0.1:{port}/infertap/metrics")]
    )
    for name, (component, settings) in workers.items():
        mport = free_port()
        proc = _runner(component, {**settings, "name": name, "metrics_port": mport}, tmp / f"{name}.log")
        procs.append(proc)
        targets.append(Target(name, f"127.0.0.1:{mport}"))
        stack.children.append((proc, f"http://127.0.0.1:{mport}/metrics"))
    return stack


def wait_ready(stack: QualityStack) -> None:
    """Every process of `stack` answers on its port."""
    for proc, url in stack.children:
        proc.wait_http(url, timeout=180)


def traffic(stack: QualityStack) -> None:
    """Predictions with probabilities, ids in `ce-id`; then labels (late, duplicated, for ids never
    logged) through the sidecar's feedback endpoint. Fills `stack.predicted` and `stack.truth`."""
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(7)
    pick = rng.permutation(len(x))[:CLEAN]
    # then rows between versicolor and virginica, labelled by the petal width (the model is unsure and errs),
    # some with a petal length far beyond the reference's range
    middle = (x[y == 1].mean(axis=0) + x[y == 2].mean(axis=0)) / 2
    noisy = middle + rng.normal(0.0, 0.25, size=(NOISY, 4))
    noisy[[i - CLEAN for i in FAR], 2] = 9.0
    rows = np.vstack([x[pick], noisy])
    truth = [CLASSES[i] for i in y[pick]] + [CLASSES[2] if r[3] > 1.75 or r[2] > 7 else CLASSES[1] for r in noisy]
    url = f"{stack.sidecar}/v1/models/iris"
    with httpx.Client(timeout=30) as client:
        for i, row in enumerate(rows.round(3).tolist()):
            if i in TEXT_BEFORE:
                bad = client.post(
                    f"{url}:predict",
                    json={"instances": [[row[0], "n/a", row[2], row[3]]]},
                    headers={"ce-id": f"bad-{i}"},
                )
                assert bad.status_code >= 400, bad.text
            reply = client.post(
                f"{url}:predict",
                json={"instances": [row], "parameters": {"predict_proba": True}},
                headers={"ce-id": f"q-{i}"},
            )
            assert reply.status_code == 200, reply.text
            stack.predicted.append(CLASSES[int(np.argmax(reply.json()["predictions"][0]))])
        now = time.time()
        labels = [{"id": f"q-{i}", "target": truth[i], "time": now + 60 + 5 * i} for i in range(LABELLED)]
        labels += [{"id": f"q-{i}", "target": truth[i], "time": now + 900} for i in range(DUPLICATES)]
        labels += [{"id": f"ghost-{k}", "target": "setosa", "time": now - 3 * 86400} for k in range(GHOSTS)]
        reply = client.post(f"{url}/feedback", json=labels)
        assert reply.status_code == 202, reply.text
    stack.truth = truth
