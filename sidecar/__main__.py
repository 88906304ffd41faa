"""`python -m sidecar` is `infertap`."""
from sidecar.cli import app

app(prog_name="infertap")
