"""infertap sidecar package."""
