"""Transport-free payload codecs: V1 and Open Inference Protocol (V2) bodies to and from numpy.

Imports numpy, orjson and pydantic only (no web framework), so detectors can decode logged
payloads with it.
"""

from infertap.serving.codec.datatypes import DATATYPES, NUMPY_DTYPES, Datatype, datatype_of, numpy_dtype
from infertap.serving.codec.errors import CodecError
from infertap.serving.codec.v1 import (
    V1InputsBody,
    V1InstancesBody,
    V1PredictResponse,
    V1Request,
    decode_v1_request,
    decode_v1_response,
    encode_v1_response,
)
from infertap.serving.codec.v2 import (
    BINARY_TYPE,
    HEADER_LENGTH,
    JSON_TYPE,
    InferenceRequest,
    InferenceResponse,
    MetadataTensor,
    ModelMetadata,
    RequestInput,
    RequestOutput,
    ResponseOutput,
    ServerMetadata,
    binary_header_length,
    decode_v2_request,
    decode_v2_response,
    encode_v2_request,
    encode_v2_response,
    wants_binary,
)

__all__ = [
    "BINARY_TYPE",
    "DATATYPES",
    "HEADER_LENGTH",
    "JSON_TYPE",
    "NUMPY_DTYPES",
    "CodecError",
    "Datatype",
    "InferenceRequest",
    "InferenceResponse",
    "MetadataTensor",
    "ModelMetadata",
    "RequestInput",
    "RequestOutput",
    "ResponseOutput",
    "ServerMetadata",
    "V1InputsBody",
    "V1InstancesBody",
    "V1PredictResponse",
    "V1Request",
    "binary_header_length",
    "datatype_of",
    "decode_v1_request",
    "decode_v1_response",
    "decode_v2_request",
    "decode_v2_response",
    "encode_v1_response",
    "encode_v2_request",
    "encode_v2_response",
    "numpy_dtype",
    "wants_binary",
]
