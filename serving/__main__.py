"""`python -m infertap.serving`: one model server from flags (or a JSON ServerSettings file)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from infertap.serving.server import run
from infertap.serving.settings import ModelSettings, ServerSettings


def parse_settings(argv: list[str] | None = None) -> ServerSettings:
    """ServerSettings from command-line flags."""
    p = argparse.ArgumentParser(
        prog="python -m infertap.serving", description="infertap model server (V1 and V2 REST)."
    )
    p.add_argument("--config", type=Path, help="JSON file holding a whole ServerSettings (other flags ignored)")
    p.add_argument("--model-name", help="name in URLs: /v1/models/NAME, /v2/models/NAME")
    p.add_argument("--model-format", choices=["sklearn", "xgboost", "lightgbm", "pytorch", "onnx"])
    p.add_argument("--storage-uri", help="file://path, a path to the model file, or a folder holding one")
    p.add_argument("--model-version")
    p.add_argument("--predict-proba", action="store_true", help="answer class probabilities")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--max-batch-wait-ms", type=float, default=2.0)
    p.add_argument("--no-dynamic-batching", action="store_true")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--http-port", type=int, default=8080)
    p.add_argument("--max-request-bytes", type=int, default=64 * 1024 * 1024)
    p.add_argument("--inference-service", default="")
    p.add_argument("--log-level", default="info")
    a = p.parse_args(argv)
    if a.config:
        return ServerSettings.model_validate(json.loads(a.config.read_text()))
    missing = [f for f in ("model_name", "model_format", "storage_uri") if getattr(a, f) is None]
    if missing:
        p.error("the following arguments are required: " + ", ".join("--" + m.replace("_", "-") for m in missing))
    model = ModelSettings(
        name=a.model_name,
        format=a.model_format,
        uri=a.storage_uri,
        version=a.model_version,
        predict_proba=a.predict_proba,
        device=a.device,
        max_batch_size=a.max_batch_size,
        max_batch_wait_ms=a.max_batch_wait_ms,
        dynamic_batching=not a.no_dynamic_batching,
    )
    return ServerSettings(
        host=a.host,
        http_port=a.http_port,
        models=[model],
        max_request_bytes=a.max_request_bytes,
        inference_service=a.inference_service or a.model_name,
        log_level=a.log_level,
    )


if __name__ == "__main__":
    run(parse_settings())
