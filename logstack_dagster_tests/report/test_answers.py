"""The numbers behind every chart equal what plain SQL over the lake's Parquet says."""

from logstack_dagster.report.answers import render_text
from logstack_dagster.report.charts import build_charts
from logstack_dagster.report.run import load_answers

from .conftest import HOUR_A, HOUR_B


def _charts(settings, **kwargs):
    return {c.key: c for c in build_charts(load_answers(settings, **kwargs))}


def _series(chart):
    return {s.name: list(s.values) for s in chart.series}


def _ranked(chart):
    return dict(zip(chart.labels, chart.series[0].values))


def test_time_charts_equal_the_lake(lake_settings, lake_sql):
    charts = _charts(lake_settings)

    per_hour = lake_sql.execute("""
        SELECT date_trunc('hour', event_time) AS h,
               count(*) FILTER (WHERE ua_class = 'human'), count(*) FILTER (WHERE is_bot),
               count(*) FILTER (WHERE NOT is_bot AND ua_class <> 'human')
        FROM rows GROUP BY h ORDER BY h
    """).fetchall()
    assert [h for h, *_ in per_hour] == [HOUR_A, HOUR_B]
    expected = {"humans": [r[1] for r in per_hour], "bots": [r[2] for r in per_hour]}
    if any(r[3] for r in per_hour):
        expected["empty or unknown agent"] = [r[3] for r in per_hour]
    assert _series(charts["requests_per_hour"]) == expected
    assert charts["requests_per_hour"].labels == ("2019-01-22 10:00", "2019-01-22 11:00")

    classes = {}
    for status_class, hour, count in lake_sql.execute("""
        SELECT (status_code // 100)::VARCHAR || 'xx', date_trunc('hour', event_time), count(*)
        FROM rows GROUP BY ALL
    """).fetchall():
        classes.setdefault(status_class, [0, 0])[[HOUR_A, HOUR_B].index(hour)] = count
    assert _series(charts["status_codes_per_hour"]) == classes

    failures = lake_sql.execute(
        "SELECT filed, count(*) FROM failures GROUP BY filed").fetchall()
    by_hour = dict(failures)
    assert _series(charts["parse_failures_per_hour"]) == {
        "quarantined": [by_hour.get(HOUR_A, 0), by_hour.get(HOUR_B, 0)]}
    assert sum(by_hour.values()) == 2


def test_ranked_charts_equal_the_lake(lake_settings, lake_sql):
    charts = _charts(lake_settings)

    def counts(sql):
        return dict(lake_sql.execute(sql).fetchall())

    assert _ranked(charts["countries"]) == counts(
        "SELECT country || ' · ' || country_name, count(*) FROM rows GROUP BY ALL")
    assert _ranked(charts["top_paths"]) == counts(
        "SELECT path, count(*) FROM rows GROUP BY path")
    assert _ranked(charts["top_referrers"]) == counts(
        "SELECT referrer, count(*) FROM rows WHERE referrer IS NOT NULL GROUP BY referrer")
    assert _ranked(charts["not_found_paths"]) == counts(
        "SELECT path, count(*) FROM rows WHERE status_code = 404 GROUP BY path")
    assert _ranked(charts["offenders"]) == counts("""
        SELECT status_code || ' · ' || client || ' · unknown', count(*) FROM rows
        WHERE status_code <> 200 GROUP BY ALL""")
    assert _ranked(charts["bots"]) == counts("""
        SELECT bot_name || ' (' || bot_category || ')', count(*) FROM rows
        WHERE is_bot GROUP BY ALL""")
    # Largest first, as drawn.
    values = charts["top_paths"].series[0].values
    assert list(values) == sorted(values, reverse=True)


def test_json_holds_the_same_numbers(lake_settings, lake_sql):
    answers = load_answers(lake_settings)
    data = answers.to_json()

    total, quarantined = lake_sql.execute(
        "SELECT (SELECT count(*) FROM rows), (SELECT count(*) FROM failures)").fetchone()
    assert (data["requests"], data["quarantined"], data["hours"]) == (total, quarantined, 2)
    assert data["first_hour"] == "2019-01-22T10:00:00Z"
    assert [r["requests"] for r in data["traffic"]] == [5, 6]
    assert sum(r["requests"] for r in data["status_codes"]) == total
    assert data["filter"] == {"from": None, "to": None, "vhost": None, "audience": None}


def test_the_lake_and_the_metric_tables_agree(lake_settings):
    from_metrics = load_answers(lake_settings, prefer="metrics").to_json()
    from_lake = load_answers(lake_settings, prefer="lake").to_json()

    assert (from_metrics.pop("source"), from_lake.pop("source")) == ("metrics", "lake")
    assert from_metrics == from_lake


def test_text_report_shows_every_section(lake_settings):
    text = render_text(load_answers(lake_settings))

    for title in ("Requests per hour", "Requests by country", "Requests by status code",
                  "Top paths", "Top referrers", "Paths answered 404",
                  "Non-200 responses by status code and client", "Top bots"):
        assert f"\n{title}\n" in text
    assert text.startswith("11 requests and 2 quarantined lines over 2 hours")


def test_without_bot_columns_there_is_no_bot_section(plain_lake_settings):
    answers = load_answers(plain_lake_settings)

    assert answers.bots is None and not answers.audience
    assert "bots" not in _charts(plain_lake_settings)
    assert "Top bots" not in render_text(answers)
    assert _series(_charts(plain_lake_settings)["requests_per_hour"]) == {
        "requests": [5, 6]}
