"""Filters change the numbers as they should, from whichever source answers them."""

from datetime import UTC, datetime

import pytest

from logstack_dagster.report.filters import (
    HOUR,
    FilterError,
    ReportFilter,
    parse_from,
    parse_to,
)
from logstack_dagster.report.run import load_answers

from .conftest import HOUR_A, HOUR_B


@pytest.mark.parametrize(("text", "start", "end"), [
    ("2019-01-22", datetime(2019, 1, 22, tzinfo=UTC), datetime(2019, 1, 23, tzinfo=UTC)),
    ("2019-01-22T10", HOUR_A, HOUR_B),
    ("2019-01-22 10:59:59", HOUR_A, HOUR_B),
    ("2019-01-22T12:30+02:00", HOUR_A, HOUR_B),
    ("2019-01-22T10:00:00Z", HOUR_A, HOUR_B),
])
def test_bounds_are_whole_utc_hours(text, start, end):
    assert parse_from(text) == start
    assert parse_to(text) == end


def test_a_bound_that_is_no_time_is_refused_with_an_example():
    with pytest.raises(ValueError, match="2015-05-17T10:00.*'last tuesday'"):
        parse_from("last tuesday")


@pytest.mark.parametrize("text", ["0001-01-01T00:00+01:00", "9999-12-31T23:59-05:00",
                                  "9999-12-31"])
def test_a_bound_beyond_the_years_python_holds_is_refused(text):
    with pytest.raises(ValueError, match="outside the years 1 to 9999 in UTC"):
        parse_from(text) if text.startswith("0001") else parse_to(text)


def test_an_empty_range_is_refused():
    with pytest.raises(FilterError, match="--from 2019-01-22 11:00 is after --to"):
        ReportFilter(start=HOUR_B, end=HOUR_B)


def test_from_and_to_select_one_hour(lake_settings, lake_sql):
    answers = load_answers(lake_settings, ReportFilter(start=HOUR_B, end=HOUR_B + HOUR))

    expected = lake_sql.execute(
        "SELECT count(*) FROM rows WHERE date_trunc('hour', event_time) = $1", [HOUR_B]
    ).fetchone()[0]
    assert answers.source == "metrics"
    assert (answers.hours, answers.first_hour, answers.requests) == (1, HOUR_B, expected)
    assert [r["hour"] for r in answers.traffic] == [HOUR_B]
    assert {r["status_code"]: r["requests"] for r in answers.status_codes} == {
        200: 2, 304: 1, 403: 2, 404: 1}
    # The other hour on its own makes up the rest.
    before = load_answers(lake_settings, ReportFilter(end=HOUR_B))
    assert before.requests + answers.requests == load_answers(lake_settings).requests


def test_vhost_is_counted_from_the_lake(lake_settings, lake_sql):
    answers = load_answers(lake_settings, ReportFilter(vhost="API.example.com"))

    per_hour = lake_sql.execute("""
        SELECT count(*) FILTER (WHERE event_time < $2), count(*) FILTER (WHERE event_time >= $2)
        FROM rows WHERE vhost = $1
    """, ["api.example.com", HOUR_B]).fetchone()
    assert answers.source == "lake"
    assert [r["requests"] for r in answers.traffic] == list(per_hour) == [2, 2]
    assert {r["path"]: r["requests"] for r in answers.top_paths} == {
        "/v1/items": 2, "/v1/login": 2}
    assert [r["bot_name"] for r in answers.bots] == ["curl"]


def test_vhost_and_hours_combine(lake_settings):
    answers = load_answers(
        lake_settings, ReportFilter(start=HOUR_A, end=HOUR_B, vhost="www.example.com"))

    assert (answers.hours, answers.requests) == (1, 3)
    assert {r["status_code"]: r["requests"] for r in answers.status_codes} == {200: 2, 404: 1}


def test_humans_and_bots_split_the_requests(lake_settings, lake_sql):
    everyone = load_answers(lake_settings)
    humans = load_answers(lake_settings, ReportFilter(audience="humans"))
    bots = load_answers(lake_settings, ReportFilter(audience="bots"))

    expected_bots = lake_sql.execute("SELECT count(*) FROM rows WHERE is_bot").fetchone()[0]
    assert bots.requests == expected_bots == 4
    assert humans.requests == 7
    assert [r["bots"] for r in bots.traffic] == [r["bots"] for r in everyone.traffic]
    assert all(r["humans"] == 0 for r in bots.traffic)
    assert all(r["bots"] == 0 for r in humans.traffic)
    assert humans.bots == [] and humans.not_found_paths == []
    assert {r["path"] for r in bots.not_found_paths} == {"/missing"}
    # Parse failures have no user agent: they stay in every view of the hours.
    assert humans.quarantined == bots.quarantined == everyone.quarantined == 2


def test_humans_and_bots_need_the_bot_columns(plain_lake_settings):
    with pytest.raises(FilterError, match="--bots: the lake has no"):
        load_answers(plain_lake_settings, ReportFilter(audience="bots"))
    with pytest.raises(FilterError, match="--humans"):
        load_answers(plain_lake_settings, ReportFilter(audience="humans"))


def test_an_unknown_vhost_is_named_with_the_known_ones(lake_settings):
    with pytest.raises(FilterError, match="'shop.example.com'.*api.example.com, www"):
        load_answers(lake_settings, ReportFilter(vhost="shop.example.com"))


def test_the_metric_tables_cannot_be_forced_to_filter_a_vhost(lake_settings):
    with pytest.raises(FilterError, match="--vhost"):
        load_answers(lake_settings, ReportFilter(vhost="www.example.com"), prefer="metrics")
