"""infertap.sidecar: what sits in the request path: the HTTP hop (reverse proxy) and the ASGI middleware that tap traffic."""
