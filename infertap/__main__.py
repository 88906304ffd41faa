"""`python -m infertap` is `infertap`."""

from infertap.stack.cli import app

app(prog_name="infertap")
