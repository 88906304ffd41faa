"""DynamicBatcher unit tests: merging, splitting, limits and errors, with a recording model function."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from infertap.serving.batching import DynamicBatcher

pytestmark = pytest.mark.fast  # starts no process (make test-fast)


class Recorder:
    """A 'model' that doubles its input and remembers each batch size it saw."""

    def __init__(self, fail: bool = False):
        self.sizes: list[int] = []
        self.fail = fail

    async def __call__(self, arrays):
        self.sizes.append(arrays[0].shape[0])
        await asyncio.sleep(0.005)  # a model call takes time; requests pile up meanwhile
        if self.fail:
            raise RuntimeError("model exploded")
        return [arrays[0] * 2, arrays[0].sum(axis=1)]


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_calls_and_get_their_own_rows() -> None:
    model = Recorder()
    observed: list[int] = []
    batcher = DynamicBatcher(model, max_batch_size=64, max_wait_ms=20, observe=observed.append)

    async def main():
        xs = [np.full((1, 3), i, dtype=np.float32) for i in range(32)]
        return xs, await asyncio.gather(*(batcher.submit([x]) for x in xs))

    xs, results = run(main())
    for x, (doubled, summed) in zip(xs, results, strict=True):
        assert doubled.tolist() == (x * 2).tolist()
        assert summed.tolist() == [x.sum()]
    assert sum(model.sizes) == 32
    assert len(model.sizes) < 32  # requests were merged
    assert max(model.sizes) > 1
    assert observed == model.sizes and batcher.calls == len(model.sizes) and batcher.rows == 32


def test_batches_never_exceed_max_batch_size() -> None:
    model = Recorder()
    batcher = DynamicBatcher(model, max_batch_size=8, max_wait_ms=20)

    async def main():
        await asyncio.gather(*(batcher.submit([np.zeros((3, 2))]) for _ in range(10)))

    run(main())
    assert sum(model.sizes) == 30
    assert max(model.sizes) <= 8


def test_oversized_request_runs_alone() -> None:
    model = Recorder()
    batcher = DynamicBatcher(model, max_batch_size=4, max_wait_ms=1)
    ((doubled, _),) = [run(batcher.submit([np.ones((10, 2))]))]
    assert doubled.shape == (10, 2) and model.sizes == [10]


def test_incompatible_shapes_are_not_merged() -> None:
    model = Recorder()
    batcher = DynamicBatcher(model, max_batch_size=64, max_wait_ms=20)

    async def main():
        return await asyncio.gather(*(batcher.submit([np.ones((1, 2 + i % 2))]) for i in range(6)))

    results = run(main())
    assert [r[0].shape for r in results] == [(1, 2), (1, 3)] * 3
    assert sum(model.sizes) == 6 and len(model.sizes) >= 2


def test_model_error_reaches_every_waiting_request() -> None:
    batcher = DynamicBatcher(Recorder(fail=True), max_batch_size=64, max_wait_ms=10)

    async def main():
        return await asyncio.gather(*(batcher.submit([np.ones((1, 2))]) for _ in range(4)), return_exceptions=True)

    results = run(main())
    assert all(isinstance(r, RuntimeError) and "exploded" in str(r) for r in results)


def test_requests_need_one_batch_axis() -> None:
    batcher = DynamicBatcher(Recorder(), max_batch_size=4, max_wait_ms=1)
    with pytest.raises(ValueError, match="same first"):
        run(batcher.submit([np.ones((2, 2)), np.ones((3, 2))]))
