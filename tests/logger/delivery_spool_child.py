"""Child process of the crash-recovery test: spool N events for a dead sink, say so, wait to be killed.

argv: kafka_url spool_dir n
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from delivery_fixtures import make_event  # noqa: E402

from infertap.logger.delivery import build_delivery  # noqa: E402
from infertap.sidecar.settings import LoggerSettings  # noqa: E402


async def main(url: str, spool_dir: str, n: int) -> None:
    delivery = build_delivery(
        LoggerSettings(
            log_url=[url],
            spool_dir=Path(spool_dir),
            inference_service="iris",
            retry_backoff_s=0.2,
            retry_backoff_max_s=0.5,
        )
    )
    await delivery.start()
    for i in range(n):
        delivery.submit(make_event(i))
    worker = delivery.workers[0]
    while worker.counts["spooled"] < n:
        await asyncio.sleep(0.05)
    print(f"SPOOLED {worker.counts['spooled']}", flush=True)
    await asyncio.sleep(3600)  # killed here, never stopped cleanly


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
