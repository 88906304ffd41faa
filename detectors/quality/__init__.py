"""Data quality on the stream (docs/data-quality.md): a schema per feature, checked per window.

- `schema`: the schema (`Schema`, `FeatureSchema`), what a spec may declare (`DeclaredFeature`)
  and the backend's parameters (`DataQualityParams`); pydantic only, so the settings and the
  spec model import it cheaply;
- `infer`: the schema of a reference frame (`infertap fit`);
- `checks`: one window's checks against the schema;
- `decode`: the worker's frame for it: every row, the values as sent (no conversion to numbers);
- `metrics`: its Prometheus series.

The backend is `infertap.detectors.backends.data_quality.DataQuality`.
"""
