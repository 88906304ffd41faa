"""infertap logger package."""
