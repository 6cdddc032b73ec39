"""The dataflow from the topic into the lake: source, processing, sink and its runners.

Importing this package sets two defaults of the libraries underneath for the process,
which they read once, at load: every dataflow process imports it first, as `logstack flow`
or as `python -m ...streaming.run`, before any of its modules imports pyarrow or numpy.
A user's own setting of either variable stays.

- Arrow's buffers come from the C library's allocator. A batch's buffers are allocated and
  freed in runs of tens of megabytes, which pyarrow's default, mimalloc, handed back to the
  kernel and faulted in again: a 10M-line topic took 83 s with mimalloc, 79 s with jemalloc
  (both with 12 s of system time) and 72 s with the C library's allocator (2 s), at 804,
  723 and 817 MiB of peak memory.
- numpy's BLAS starts no thread pool: the dataflow does no linear algebra, and the idle
  pool's threads cost about 0.1 CPU s a process.
"""

import os

os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
