"""The black-box explainers' view of the model: a predictor reached over V1 or V2 HTTP.

Every call carries `infertap-skip-logging: true`, so the logger sidecar (when the URL
points at it) keeps perturbation traffic out of the logged events, as MLServer's explain
runtime does with `Seldon-Skip-Logging`. Perturbations go in as few requests as possible:
one request per `max_rows_per_request` rows, V2 with binary tensor data both ways. Calls
run in the explainer's worker threads (shap calls the model synchronously), so the client
is a synchronous httpx client shared by those threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import numpy as np
import orjson

from infertap.explainers.errors import DeadlineExceeded, PredictorError
from infertap.serving.codec import HEADER_LENGTH, CodecError, decode_v2_response, encode_v2_request

SKIP_HEADER = "infertap-skip-logging"


class HTTPPredictor:
    """Calls `{url}/v1/models/{model}:predict` or `{url}/v2/models/{model}/infer`.

    `predict_proba=None` asks for class probabilities and, when the model answers that it
    has none, falls back to plain predictions for the rest of the process.
    """

    def __init__(
        self,
        url: str,
        model: str,
        protocol: str = "v2",
        predict_proba: bool | None = None,
        max_rows_per_request: int = 20_000,
        on_request: Callable[[int, float], None] | None = None,
    ):
        self.url, self.model, self.protocol = url.rstrip("/"), model, protocol
        self.predict_proba = predict_proba
        self._auto_proba = predict_proba is None
        self.max_rows = max_rows_per_request
        self.on_request = on_request
        self.requests = 0  # predictor requests made (benchmarks and tests read it)
        self._client = httpx.Client(
            headers={SKIP_HEADER: "true"},
            timeout=None,
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
        )
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def bind(self, deadline: float | None) -> Callable[[np.ndarray], np.ndarray]:
        """A plain `f(X) -> outputs` for shap/alibi that stops at `deadline` (time.monotonic())."""
        return lambda X: self.predict(np.asarray(X), deadline)

    def predict(self, X: np.ndarray, deadline: float | None = None) -> np.ndarray:
        """Model outputs for the rows of X (2-D result: rows x outputs, or 1-D for single outputs)."""
        X = np.asarray(X)
        X = X.astype(object) if X.dtype.kind in "UOS" else np.ascontiguousarray(X, dtype=np.float32)
        if len(X) <= self.max_rows:
            return self._call(X, deadline)
        return np.concatenate([self._call(X[i : i + self.max_rows], deadline) for i in range(0, len(X), self.max_rows)])

    def _call(self, X: np.ndarray, deadline: float | None) -> np.ndarray:
        proba = self.predict_proba if self.predict_proba is not None else True
        status, body, headers = self._post(X, proba, deadline)
        if status == 400 and self._auto_proba and proba and b"probabilities" in body:
            with self._lock:  # the model has no predict_proba: plain predictions from now on
                self.predict_proba = False
            status, body, headers = self._post(X, False, deadline)
        elif status == 200 and self._auto_proba and self.predict_proba is None:
            with self._lock:
                self.predict_proba = True
        if status != 200:
            raise PredictorError(
                f"predictor {self.url} answered {status} for {len(X)} rows: {body[:300].decode('utf-8', 'replace')}"
            )
        return self._decode(body, headers)

    def _post(self, X: np.ndarray, proba: bool, deadline: float | None) -> tuple[int, bytes, httpx.Headers]:
        timeout = None
        if deadline is not None:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                raise DeadlineExceeded("deadline passed before the next predictor call")
        text = X.dtype == object  # text instances (AnchorText): V1 strings, V2 BYTES
        if self.protocol == "v1":
            url = f"{self.url}/v1/models/{self.model}:predict"
            content = orjson.dumps(
                {"instances": X.tolist() if text else X, "parameters": {"predict_proba": proba}},
                option=orjson.OPT_SERIALIZE_NUMPY,
            )
            headers = {"content-type": "application/json"}
        else:
            url = f"{self.url}/v2/models/{self.model}/infer"
            if text:
                X = np.array([v.encode() if isinstance(v, str) else v for v in X.reshape(-1)], dtype=object)
            content, headers = encode_v2_request(
                {"input-0": X}, binary=True, binary_outputs=True, parameters={"predict_proba": proba}
            )
        started = time.perf_counter()
        try:
            reply = self._client.post(
                url, content=content, headers=headers, timeout=httpx.Timeout(timeout) if timeout is not None else None
            )
        except httpx.TimeoutException:
            raise DeadlineExceeded(f"predictor {self.url} did not answer before the deadline") from None
        except httpx.HTTPError as err:
            raise PredictorError(f"cannot reach predictor {url}: {type(err).__name__}: {err}") from None
        self.requests += 1
        if self.on_request is not None:
            self.on_request(len(X), time.perf_counter() - started)
        return reply.status_code, reply.content, reply.headers

    def _decode(self, body: bytes, headers: httpx.Headers) -> np.ndarray:
        try:
            if self.protocol == "v1":
                preds = orjson.loads(body)["predictions"]
                return np.asarray(preds, dtype=np.float64)
            length = headers.get(HEADER_LENGTH)
            response = decode_v2_response(body, int(length) if length is not None else None)
            return np.asarray(response.outputs[0].data, dtype=np.float64)
        except (CodecError, KeyError, ValueError, TypeError) as err:
            raise PredictorError(f"predictor {self.url} sent a reply that is not a prediction: {err}") from None


__all__ = ["HTTPPredictor", "SKIP_HEADER"]
