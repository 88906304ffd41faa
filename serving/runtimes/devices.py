"""Which device a GPU-capable runtime runs on: pure functions, so CPU-only CI covers them."""

from __future__ import annotations

import logging

log = logging.getLogger("infertap.serving")

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


def select_torch_device(requested: str, cuda_available: bool) -> str:
    """'cuda' when asked for (auto or cuda) and present, else 'cpu' (with a warning if cuda was asked)."""
    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {requested!r}")
    if requested == "cpu":
        return "cpu"
    if cuda_available:
        return "cuda"
    if requested == "cuda":
        log.warning("device cuda requested but torch sees no CUDA device; running on cpu")
    return "cpu"


def select_onnx_providers(requested: str, available: list[str]) -> list[str]:
    """onnxruntime providers in order of preference: CUDA first when present and allowed, CPU always."""
    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {requested!r}")
    if requested != "cpu" and CUDA_PROVIDER in available:
        return [CUDA_PROVIDER, CPU_PROVIDER]
    if requested == "cuda":
        log.warning("device cuda requested but onnxruntime has no %s; running on cpu", CUDA_PROVIDER)
    return [CPU_PROVIDER]
