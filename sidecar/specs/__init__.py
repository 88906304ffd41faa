"""InferenceService and Detector specs: typed models and a path-aware YAML loader."""
from sidecar.specs.detector import Detector
from sidecar.specs.inference_service import InferenceService, LoggerSpec, ModelSpec
from sidecar.specs.loader import Document, LoadResult, SpecError, load_file, load_files, load_text, register_kind
from sidecar.specs.logger_url import KafkaURL

__all__ = [
    "Detector", "InferenceService", "LoggerSpec", "ModelSpec", "Document", "LoadResult", "SpecError",
    "load_file", "load_files", "load_text", "register_kind", "KafkaURL",
]
