"""infertap: monitoring and explaining machine-learning models in production.

The one top-level package. Its parts live in the repository's top-level folders and are
linked in here (see DESIGN.md, "Layout"):

- `infertap.serving`: the model server (V1, Open Inference Protocol, runtimes, codecs)
- `infertap.sidecar`: what sits in the request path (the HTTP hop, the ASGI middleware)
- `infertap.logger`: CloudEvents, sinks, delivery queue and disk spool, ingest
- `infertap.stream`: the stream contract (event types, topics, kafka:// URLs, clients)
- `infertap.detectors`, `infertap.explainers`: the workers and servers on the stream
- `infertap.stack`: specs, planner, `infertap up`, render, report, broker, the CLI
"""

__version__ = "0.2.0.dev0"
