"""DistinctCache shared by the worker threads of a process."""

from __future__ import annotations

import random
import threading
import time

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from logstack_dagster.enrichment.distinct import DistinctCache

SCHEMA = pa.schema([("answer", pa.string())])


class Recorder:
    """A look-up that answers a value in upper case, records what it was asked, and notes
    whether two threads were ever inside it at once."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.inside = 0
        self.overlapped = False
        self.lock = threading.Lock()

    def __call__(self, values: pa.Array) -> pa.Table:
        with self.lock:
            self.inside += 1
            self.overlapped |= self.inside > 1
        time.sleep(0.002)  # long enough for another thread to arrive meanwhile
        with self.lock:
            self.inside -= 1
            self.asked.extend(values.to_pylist())
        return pa.table({"answer": pc.utf8_upper(values)})


def run_threads(cache: DistinctCache, threads: int, batches: int, pool: int) -> list[str]:
    """Apply random batches from `threads` threads at once; return the mismatches seen."""
    wrong: list[str] = []
    start = threading.Barrier(threads)

    def work(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        for _ in range(batches):
            keys = [f"key-{rng.randrange(pool)}" for _ in range(rng.randint(1, 300))]
            out = cache.apply(pa.table({"key": pa.array(keys, pa.string())}))
            answers = out.column("answer").to_pylist()
            wrong.extend(k for k, a in zip(keys, answers, strict=True) if a != k.upper())

    workers = [threading.Thread(target=work, args=(seed,)) for seed in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return wrong


def test_threads_sharing_a_cache_look_each_value_up_once() -> None:
    look_up = Recorder()
    cache = DistinctCache("key", SCHEMA, look_up, max_size=10_000)

    wrong = run_threads(cache, threads=4, batches=40, pool=2_000)

    assert wrong == []
    assert not look_up.overlapped
    assert len(look_up.asked) == len(set(look_up.asked)) == len(cache)


@pytest.mark.parametrize("max_size", [40, 300])
def test_a_cache_that_starts_again_under_threads_answers_every_row_right(max_size) -> None:
    # A full cache starts again from the batch at hand; a thread holding the state from
    # before must still read answers in line with its keys (the failure this guards
    # against was an index out of bounds, or another key's answer).
    look_up = Recorder()
    cache = DistinctCache("key", SCHEMA, look_up, max_size=max_size)

    wrong = run_threads(cache, threads=4, batches=60, pool=1_000)

    assert wrong == []
    assert not look_up.overlapped
    assert len(look_up.asked) > 1_000  # it did start again, many times
