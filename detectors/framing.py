"""The decoder of a worker's windows: numbers (`decode.Decoder`), or a text frame
(`text.frame.TextDecoder`) for the text detectors and the LLM response signals, or the values
as sent (`quality.decode.QualityDecoder`) for DataQuality (`frames.frame_of` says which)."""

from __future__ import annotations

from infertap.detectors.decode import Decoder
from infertap.detectors.frames import frame_of
from infertap.detectors.quality.decode import QualityDecoder
from infertap.detectors.settings import WorkerSettings
from infertap.detectors.text.frame import TextDecoder


def make_decoder(settings: WorkerSettings) -> Decoder | TextDecoder:
    """The decoder of the worker's windows."""
    frame = frame_of(settings)
    if frame == "quality":  # every row, the values as sent
        return QualityDecoder(settings.features, settings.events, settings.input_name, settings.output_name)
    if frame == "numeric":
        return Decoder(
            settings.features, settings.events, settings.input_name, settings.output_name, settings.missing_values
        )
    return TextDecoder(
        settings.features, settings.events, settings.input_name, settings.output_name, llm=frame == "llm_response"
    )
