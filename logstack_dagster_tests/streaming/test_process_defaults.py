"""The library defaults a dataflow process sets for itself (`logstack_dagster/streaming`)."""

import os
import subprocess
import sys

# What a dataflow process imports first, then the allocator Arrow ended up with.
PROBE = ("import logstack_dagster.streaming.run, pyarrow; "
         "print(pyarrow.default_memory_pool().backend_name)")


def _allocator(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    done = subprocess.run([sys.executable, "-c", PROBE], env={**base, **env},
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_a_dataflow_process_gives_arrow_buffers_to_the_c_library():
    assert _allocator() == "system"


def test_an_allocator_the_user_chose_stays():
    assert _allocator(ARROW_DEFAULT_MEMORY_POOL="mimalloc") == "mimalloc"
