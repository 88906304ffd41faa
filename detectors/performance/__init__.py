"""Realised performance: ground truth joined to the logged predictions by id, on the stream.

`python -m infertap.detectors.performance` runs one worker (`worker.py`); `infertap up` starts
one per `kind: Detector` document with `detector: {name: RealisedPerformance}`. The parts:
`settings` (the spec form, declared once), `predictions` (responses to predicted classes or
values), `state` (the bounded, durable join state per partition), `join` (the join and its
windows, no Kafka), `scores` (the figures of a window), `gauges` (the performance gauge that
the estimators share), `metrics`, `events`. docs/ground-truth.md tells the whole story.
"""
