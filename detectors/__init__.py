"""infertap detectors package."""
