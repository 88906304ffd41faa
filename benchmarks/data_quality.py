"""DataQuality per window: the decoder of values as sent and the checks, each beside a reference.

    python -m benchmarks.data_quality [--rows 1000] [--repeats 15] [--out PATH]

Windows of `--rows` logged V1 requests (8 numeric features, 2 categorical ones of 10
categories), clean and dirty (nulls, text in a number, values out of range, unseen
categories, repeated rows), as the Kafka records a worker reads. Measured in one run:

- decode: `QualityDecoder` (every row, the values as sent) against the numeric `Decoder`
  (the drift detectors', categories to codes) on the clean window, and on a window of the
  numeric features alone (the numeric decoder's quick path: one conversion a window);
- checks: `DataQuality.predict` against pandas doing the same checks on the same window
  (`isna`, `to_numeric`, range, `isin`, `duplicated`), whose counts must agree with ours.

Seconds per window are medians over `--repeats`; the JSON (benchmarks/results/data_quality.json)
gives the ratios ours / reference.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

OUT = Path(__file__).resolve().parent / "results" / "data_quality.json"
NUMERIC = [f"x{j}" for j in range(8)]
CATEGORICAL = ["c0", "c1"]
NAMES = NUMERIC + CATEGORICAL
CATEGORIES = [f"v{k}" for k in range(10)]


def reference(rows: int, seed: int = 0) -> Any:
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(NUMERIC))), columns=NUMERIC)
    for name in CATEGORICAL:
        frame[name] = rng.choice(CATEGORIES, rows)
    return frame


def window_rows(rows: int, dirty: bool, seed: int = 1) -> list[list[Any]]:
    """One window's rows as clients sent them; a dirty one with every kind of violation planted."""
    rng = np.random.default_rng(seed)
    numbers = rng.normal(size=(rows, len(NUMERIC))).tolist()
    out = [row + [str(rng.choice(CATEGORIES)) for _ in CATEGORICAL] for row in numbers]
    if dirty:
        for i in rng.choice(rows, rows // 10, replace=False):
            out[i][1] = None
        for i in rng.choice(rows, rows // 100, replace=False):
            out[i][2] = "n/a"
        for i in rng.choice(rows, rows // 100, replace=False):
            out[i][3] = 1e6
        for i in rng.choice(rows, rows // 100, replace=False):
            out[i][8] = "unseen"
        for i in rng.choice(np.arange(1, rows), rows // 12, replace=False):
            out[i] = list(out[i - 1])
    return out


def records(rows: list[list[Any]]) -> list[Any]:
    """The window's events as the logger writes them (V1 requests, binary-mode CloudEvents)."""
    from infertap.detectors.decode import Event, Record
    from infertap.stream.events import REQUEST_TYPE

    events = []
    for offset, row in enumerate(rows):
        eid = str(uuid.uuid4())
        headers = {"ce_specversion": b"1.0", "ce_id": eid.encode(), "ce_type": REQUEST_TYPE.encode()}
        record = Record("events", 0, offset, orjson.dumps({"instances": [row]}), headers, float(offset))
        events.append(Event(eid, (record,), float(offset)))
    return events


def pandas_counts(x: np.ndarray, schema: Any, tolerance: float) -> dict[str, Any]:
    """The same checks with pandas on a DataFrame of the window: the reference."""
    import pandas as pd

    frame = pd.DataFrame(x, columns=NAMES)
    counts: dict[str, Any] = {}
    for feature in schema.features:
        column = frame[feature.name]
        missing = column.isna()
        entry = {"missing": int(missing.sum())}
        if feature.type == "numeric":
            numbers = pd.to_numeric(column, errors="coerce")
            wrong = numbers.isna() & ~missing
            lo, hi = feature.allowed_range(tolerance)
            entry["type"] = int(wrong.sum())
            entry["range"] = int((~numbers.between(lo, hi) & ~numbers.isna()).sum())
        else:
            entry["unseen"] = int((~column.isin(feature.categories) & ~missing).sum())
        counts[feature.name] = entry
    counts["duplicates"] = int(frame.astype(str).duplicated().sum())
    return counts


def our_counts(result: Any) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    for f in result.quality:
        entry = {"missing": f.missing}
        if f.type == "numeric":
            entry.update(type=f.type_violations, range=f.out_of_range)
        else:
            entry["unseen"] = f.unseen
        counts[f.name] = entry
    counts["duplicates"] = result.raw["duplicates"]["rows"]
    return counts


def median_s(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def measure(rows: int, repeats: int) -> dict[str, Any]:
    from infertap.detectors.backends.registry import create_backend
    from infertap.detectors.decode import Decoder
    from infertap.detectors.quality.decode import QualityDecoder
    from infertap.detectors.settings import FeatureSettings

    backend = create_backend("DataQuality", NAMES, {"chunk_size": rows})
    backend.fit(reference(max(20 * rows, 5000)))
    schema = backend.schema
    features = [FeatureSettings(name=n) for n in NUMERIC] + [
        FeatureSettings(name=n, type="categorical", categories=CATEGORIES) for n in CATEGORICAL
    ]
    quality, numeric = QualityDecoder(features), Decoder(features)
    clean = records(window_rows(rows, dirty=False))
    dirty = records(window_rows(rows, dirty=True))
    decode = {
        "quality_decoder_s": median_s(lambda: quality.decode(clean), repeats),
        "numeric_decoder_s": median_s(lambda: numeric.decode(clean), repeats),
    }
    decode["ratio"] = decode["quality_decoder_s"] / decode["numeric_decoder_s"]
    # numbers only: the numeric decoder's quick path (one conversion per window)
    numbers = [FeatureSettings(name=n) for n in NUMERIC]
    plain = records([row[: len(NUMERIC)] for row in window_rows(rows, dirty=False)])
    quick = {
        "quality_decoder_s": median_s(lambda: QualityDecoder(numbers).decode(plain), repeats),
        "numeric_decoder_s": median_s(lambda: Decoder(numbers).decode(plain), repeats),
    }
    quick["ratio"] = quick["quality_decoder_s"] / quick["numeric_decoder_s"]
    decode = {"with_categorical": decode, "numbers_only": quick}
    checks: dict[str, Any] = {}
    for name, events in (("clean", clean), ("dirty", dirty)):
        x = quality.decode(events).x
        result = backend.predict(x)
        ours, theirs = our_counts(result), pandas_counts(x, schema, backend.options.range_tolerance)
        entry = {
            "infertap_s": median_s(lambda x=x: backend.predict(x), repeats),
            "pandas_s": median_s(lambda x=x: pandas_counts(x, schema, backend.options.range_tolerance), repeats),
            "violations": sorted(f"{v.feature}:{v.check}" for v in result.violations),
            "counts_agree": ours == theirs,
        }
        if ours != theirs:
            entry["disagreement"] = {"infertap": ours, "pandas": theirs}
        entry["ratio"] = entry["infertap_s"] / entry["pandas_s"]
        entry["rows_per_s"] = rows / entry["infertap_s"]
        checks[name] = entry
    return {"decode": decode, "checks": checks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000, help="events (one row each) per window")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    import pandas as pd

    report = {
        "benchmark": "DataQuality per window: decoder of values as sent and checks, each beside a reference",
        "rows": args.rows,
        "features": {"numeric": len(NUMERIC), "categorical": len(CATEGORICAL)},
        "repeats": args.repeats,
        "references": {
            "decode": "the numeric Decoder (drift detectors') on the same records",
            "checks": "pandas (isna, to_numeric, between, isin, duplicated) on the same window",
        },
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "pandas": pd.__version__},
        **measure(args.rows, args.repeats),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0 if all(c["counts_agree"] for c in report["checks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
