"""Remember per-value answers as Arrow columns, so a batch of known values costs no Python.

An enrichment depends on one column only (the address, the user agent), and a log
repeats the same few thousand values all day. ``DistinctCache`` keeps every value it has
answered in one Arrow array and the answers in a table aligned with it. A batch then
costs one ``index_in`` against the known values and one ``take`` of the answer table;
only values never seen before reach the (Python) look-up, once each.

One cache serves every worker thread of a process: the known values and their answers
are replaced together, never changed in place, and learning takes a lock, so a value is
looked up once per process however many workers meet it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc


class DistinctCache:
    """Append ``schema``'s columns to batches, computed once per distinct ``key`` value.

    ``look_up`` takes an array of distinct new values (a null among them stands for the
    rows whose key is null) and returns a table of ``schema`` with one row per value, in
    the same order. At most ``max_size`` values are kept; past that the cache starts again
    from the values of the batch at hand.

    ``apply`` may be called from several threads at once; ``look_up`` is only ever called
    by one of them at a time.
    """

    def __init__(self, key: str, schema: pa.Schema,
                 look_up: Callable[[pa.Array], pa.Table], *, max_size: int) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size!r}")
        self.key = key
        self.schema = schema
        self._look_up = look_up
        self._max_size = max_size
        # (known values, their answers row for row): read in one step, replaced in one step.
        self._state: tuple[pa.Array, pa.Table] | None = None
        self._learning = threading.Lock()

    def __len__(self) -> int:
        state = self._state
        return 0 if state is None else len(state[0])

    def apply(self, table: pa.Table) -> pa.Table:
        """Return ``table`` with the columns of ``schema`` appended, row for row."""
        if self.key not in table.column_names:
            raise ValueError(
                f"table has no {self.key!r} column; its columns are {table.column_names}"
            )
        keys = table.column(self.key)
        if not (pa.types.is_string(keys.type) or pa.types.is_large_string(keys.type)):
            raise ValueError(f"column {self.key!r} must be a string column, got type {keys.type}")
        taken = [name for name in self.schema.names if name in table.column_names]
        if taken:
            raise ValueError(f"table already has the columns {taken}; enrich it only once")

        state = self._state or (pa.array([], keys.type), self.schema.empty_table())
        positions = pc.index_in(keys, value_set=state[0])
        if pc.any(pc.is_null(positions)).as_py():
            with self._learning:
                # Another thread may have learned some of them while this one waited.
                state = self._state or state
                positions = pc.index_in(keys, value_set=state[0])
                missing = pc.is_null(positions)
                if pc.any(missing).as_py():
                    state = self._state = self._learn(keys, missing, *state)
                    positions = pc.index_in(keys, value_set=state[0])

        answers = state[1].take(positions)
        for field, column in zip(self.schema, answers.columns, strict=True):
            table = table.append_column(field, column)
        return table

    def _learn(self, keys: pa.ChunkedArray, missing: pa.ChunkedArray, known: pa.Array,
               answers: pa.Table) -> tuple[pa.Array, pa.Table]:
        """Look up the batch's new values; the known ones and answers with them added."""
        new = pc.unique(pc.filter(keys, missing))
        found = self._look_up(new)
        if found.num_rows != len(new) or found.schema.names != self.schema.names:
            raise AssertionError(
                f"look-up answered {found.num_rows} rows of {found.schema.names} for "
                f"{len(new)} values; expected one row each of {self.schema.names}"
            )
        found = found.cast(self.schema)

        if len(known) + len(new) > self._max_size:
            # Start again from the values this batch needs, so it is still answered whole.
            kept = pc.unique(pc.filter(keys, pc.invert(missing)))
            answers = answers.take(pc.index_in(kept, value_set=known))
            known = kept
        return (pa.concat_arrays([known, new.cast(known.type)]),
                pa.concat_tables([answers, found]).combine_chunks())
