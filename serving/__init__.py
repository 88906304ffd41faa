"""infertap serving package."""
