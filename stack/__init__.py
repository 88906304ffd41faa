"""infertap.stack: specs, planner, the supervisor behind `infertap up`, the embedded broker, render, report, the CLI."""
