"""Cutting rows into the lake's hours (`logstack_dagster/lake/layout.py`)."""

import random
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from logstack_dagster.lake import layout
from logstack_dagster.lake.layout import split_by_hour

START = datetime(2019, 12, 2, 17, 0, tzinfo=timezone.utc)


def _rows(times: list[datetime]) -> pa.Table:
    return pa.table({"event_time": pa.array(times, pa.timestamp("us", "UTC")),
                     "n": pa.array(range(len(times)), pa.int64())})


def _by_sorting(table: pa.Table) -> list[tuple[datetime, list[int]]]:
    """The reference: every hour in order, with the row numbers of its rows in order."""
    hours: dict[datetime, list[int]] = {}
    for time, n in zip(table.column("event_time").to_pylist(), table.column("n").to_pylist(),
                       strict=True):
        hours.setdefault(time.replace(minute=0, second=0, microsecond=0), []).append(n)
    return sorted(hours.items())


def _split(table: pa.Table) -> list[tuple[datetime, list[int]]]:
    return [(hour, rows.column("n").to_pylist())
            for hour, rows in split_by_hour(table, table.column("event_time"))]


@pytest.mark.parametrize("max_runs", [layout.MAX_RUNS, 0], ids=["sliced", "sorted"])
@pytest.mark.parametrize("late", [0, 3, 40, 2_000], ids=lambda n: f"{n}-late-lines")
def test_rows_are_cut_into_hours_keeping_their_order(late, max_runs, monkeypatch):
    """In time order but for `late` lines from an hour or two before: the runs of each hour
    are sliced, or the table sorted when there are more than MAX_RUNS of them (2,000 late
    lines make about 4,000); the hours and their rows are the same either way."""
    monkeypatch.setattr(layout, "MAX_RUNS", max_runs)
    pick = random.Random(late)
    times = [START + timedelta(seconds=s) for s in range(0, 6 * 3600, 2)]
    for index in pick.sample(range(3600, len(times)), late):  # from 2 hours in
        times[index] -= timedelta(hours=1, minutes=pick.randint(0, 59))
    table = _rows(times)

    split = _split(table)
    assert split == _by_sorting(table)
    assert [hour for hour, _ in split] == [START + timedelta(hours=h) for h in range(6)]


def test_times_in_another_zone_are_cut_into_utc_hours():
    """DuckDB hands `logstack requeue` its times in the session's zone; India's is +05:30."""
    times = [START + timedelta(minutes=m) for m in (10, 50, 70)]
    zoned = pa.array(times, pa.timestamp("us", "UTC")).cast(pa.timestamp("us", "Asia/Kolkata"))
    table = pa.table({"event_time": zoned, "n": pa.array([0, 1, 2], pa.int64())})

    assert _split(table) == [(START, [0, 1]), (START + timedelta(hours=1), [2])]


def test_hours_before_the_year_1000_have_four_digit_years():
    hour = datetime(1, 1, 1, 5, tzinfo=timezone.utc)
    assert layout.hour_dir(hour) == "year=0001/month=01/day=01/hour=05"
    assert layout.hour_key(hour) == "0001-01-01-05:00"
    assert layout.iso_hour(hour) == "0001-01-01T05:00:00Z"
