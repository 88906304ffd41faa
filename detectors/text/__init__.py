"""Text on the stream: what the text detectors read from events and reference corpora (docs/text-detectors.md)."""
