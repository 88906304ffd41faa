"""InferenceService and Detector specs: typed models and a path-aware YAML loader."""

from infertap.stack.specs.detector import Detector
from infertap.stack.specs.inference_service import InferenceService, LoggerSpec, ModelSpec
from infertap.stack.specs.llm_inference_service import LLMInferenceService
from infertap.stack.specs.loader import Document, LoadResult, SpecError, load_file, load_files, load_text, register_kind
from infertap.stack.specs.logger_url import KafkaURL

__all__ = [
    "Detector",
    "InferenceService",
    "LLMInferenceService",
    "LoggerSpec",
    "ModelSpec",
    "Document",
    "LoadResult",
    "SpecError",
    "load_file",
    "load_files",
    "load_text",
    "register_kind",
    "KafkaURL",
]
