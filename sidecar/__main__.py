"""`python -m infertap.sidecar`: the sidecar with flags named like KServe's agent (`cmd/agent/main.go`)."""

from __future__ import annotations

import argparse
import sys

from infertap.sidecar.settings import LoggerSettings


def _split(values: list[str] | None) -> list[str]:
    """Comma lists, repeatable: `--metadata-headers a,b --metadata-headers c`."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def parse_args(argv: list[str] | None = None) -> LoggerSettings:
    """Flags to `LoggerSettings`; unset flags keep the settings' defaults."""
    p = argparse.ArgumentParser(prog="python -m infertap.sidecar", description="infertap logger sidecar")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--component-host")
    p.add_argument("--component-port", type=int)
    p.add_argument(
        "--log-url", action="append", help="sink URL, repeatable: kafka://h:p[,h:p]/topic, http(s)://, file://"
    )
    p.add_argument("--log-mode", choices=["all", "request", "response"])
    p.add_argument("--source-uri")
    p.add_argument("--inference-service")
    p.add_argument("--namespace")
    p.add_argument("--component")
    p.add_argument("--endpoint")
    p.add_argument("--metadata-headers", action="append", help="comma list of request headers to log")
    p.add_argument("--metadata-annotations", action="append", help="k=v (comma list, repeatable)")
    p.add_argument("--explainer-url")
    p.add_argument("--kafka-client", choices=["confluent", "kafka-python"])
    p.add_argument("--spool-dir")
    p.add_argument("--max-request-bytes", type=int)
    p.add_argument(
        "--auth-token",
        dest="ingest_auth_token",
        help="bearer token the CloudEvents ingest (POST /) requires; default $INFERTAP_AUTH_TOKEN",
    )
    p.add_argument("--upstream-timeout", dest="upstream_timeout_s", type=float)
    p.add_argument(
        "--upstream-keepalive",
        dest="upstream_keepalive_s",
        type=float,
        help="seconds a pooled model-server connection may idle before it is closed (below the server's keep-alive timeout)",
    )
    p.add_argument("--metrics-path")
    # delivery knobs (LoggerSettings has the defaults and their meaning)
    p.add_argument("--queue-max-events", type=int)
    p.add_argument("--queue-max-bytes", type=int)
    p.add_argument("--spool-max-bytes", type=int)
    p.add_argument("--spool-full-policy", choices=["drop_newest", "drop_oldest"])
    p.add_argument("--batch-max-events", type=int)
    p.add_argument(
        "--batch-linger-ms", type=float, help="wait up to this long for a full batch (default 20; 0: send at once)"
    )
    p.add_argument(
        "--sink-timeout", dest="sink_timeout_s", type=float, help="seconds a batch may take before it is spooled"
    )
    p.add_argument("--retry-backoff", dest="retry_backoff_s", type=float)
    p.add_argument("--retry-backoff-max", dest="retry_backoff_max_s", type=float)
    p.add_argument("--http-timeout", dest="http_timeout_s", type=float, help="per request of http(s):// sinks")
    p.add_argument("--http-retries", type=int)
    a = p.parse_args(argv)
    values = {k: v for k, v in vars(a).items() if v is not None}
    if "metadata_headers" in values:
        values["metadata_headers"] = _split(a.metadata_headers)
    if "metadata_annotations" in values:
        pairs = _split(a.metadata_annotations)
        bad = [x for x in pairs if "=" not in x]
        if bad:
            p.error(f"--metadata-annotations wants k=v, got {bad}")
        values["metadata_annotations"] = dict(x.split("=", 1) for x in pairs)
    return LoggerSettings(**values)


def main(argv: list[str] | None = None) -> None:
    from infertap.sidecar.server import run

    run(parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
