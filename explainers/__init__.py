"""infertap explainers package."""
