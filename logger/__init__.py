"""infertap.logger: CloudEvents building, sinks (Kafka, HTTP, file), delivery queue and disk spool, ingest."""
