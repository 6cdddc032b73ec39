import pyarrow as pa
import pytest

from logstack_dagster.enrichment.referrer import (
    REFERRER_KINDS,
    REFERRER_SCHEMA,
    ReferrerEnricher,
    normalize_host,
)


@pytest.fixture(scope="module")
def referrers() -> ReferrerEnricher:
    return ReferrerEnricher(site_hosts=["Example.com", " "])


def rows(enricher: ReferrerEnricher, referrers: list[str | None], paths=None, vhosts=None):
    columns = {
        "referrer": pa.array(referrers, pa.string()),
        "path": pa.array(paths or ["/"] * len(referrers), pa.string()),
    }
    if vhosts is not None:
        columns["vhost"] = pa.array(vhosts, pa.string())
    return enricher.enrich(pa.table(columns)).to_pylist()


@pytest.mark.parametrize(
    ("referrer", "domain", "kind", "engine"),
    [
        ("https://www.example.com/pricing?plan=team", "example.com", "internal", None),
        ("https://docs.example.com/start", "docs.example.com", "internal", None),
        ("http://EXAMPLE.com:8080/", "example.com", "internal", None),
        ("/blog/page/2", None, "internal", None),
        ("https://www.google.com/", "google.com", "search_engine", "Google"),
        ("https://www.google.co.uk/search?q=logs", "google.co.uk", "search_engine", "Google"),
        ("android-app://com.google.android.googlequicksearchbox/https/www.google.com",
         "com.google.android.googlequicksearchbox", "search_engine", "Google"),
        ("https://www.bing.com/search?q=logs", "bing.com", "search_engine", "Bing"),
        ("https://duckduckgo.com/", "duckduckgo.com", "search_engine", "DuckDuckGo"),
        ("https://yandex.ru/search/?text=logs", "yandex.ru", "search_engine", "Yandex"),
        ("https://mail.google.com/mail/u/0/", "mail.google.com", "external", None),
        ("https://t.co/Ab12Cd", "t.co", "social", None),
        ("https://l.facebook.com/l.php?u=x", "l.facebook.com", "social", None),
        ("https://news.ycombinator.com/item?id=1", "news.ycombinator.com", "social", None),
        ("https://old.reddit.com/r/selfhosted/", "old.reddit.com", "social", None),
        ("https://github.com/someone/project", "github.com", "external", None),
        ("https://notexample.com/", "notexample.com", "external", None),
        ("//cdn.partner.net/embed", "cdn.partner.net", "external", None),
        (None, None, "none", None),
        ("about:blank", None, "none", None),
        ("not a url", None, "none", None),
    ],
)
def test_referrer_domain_kind_and_search_engine(referrers, referrer, domain, kind, engine):
    [row] = rows(referrers, [referrer])

    assert (row["referrer_domain"], row["referrer_kind"], row["search_engine"]) == (
        domain, kind, engine)
    assert row["referrer_kind"] in REFERRER_KINDS


def test_without_site_hosts_the_rows_own_vhost_is_internal() -> None:
    enricher = ReferrerEnricher()

    out = rows(enricher, ["https://shop.test/a", "https://shop.test/b", "https://www.example.com/"],
               vhosts=["www.shop.test", "other.test", None])

    assert [r["referrer_kind"] for r in out] == ["internal", "external", "external"]


@pytest.mark.parametrize(
    ("path", "static"),
    [
        ("/static/app.3f9a.css", True),
        ("/js/main.min.js", True),
        ("/img/Logo.PNG", True),
        ("/fonts/inter.woff2", True),
        ("/favicon.ico", True),
        ("/", False),
        ("/pricing", False),
        ("/index.html", False),
        ("/wp-login.php", False),
        ("/report.pdf", False),
        ("/v1.2/", False),
        (None, False),
    ],
)
def test_static_assets_are_told_from_pages_by_extension(referrers, path, static) -> None:
    [row] = rows(referrers, [None], paths=[path])

    assert row["is_static"] is static


def test_enrich_appends_typed_columns_in_row_order(referrers) -> None:
    table = pa.table({
        "referrer": pa.array(["https://t.co/x", None, "https://t.co/x", "https://www.google.de/"]),
        "path": pa.array(["/a.css", "/", None, "/b"]),
        "row": range(4),
    })

    out = referrers.enrich(table)

    assert out.schema.names == ["referrer", "path", "row", *REFERRER_SCHEMA.names]
    assert out.column("referrer_kind").to_pylist() == [
        "social", "none", "social", "search_engine"]
    assert out.column("is_static").to_pylist() == [True, False, False, False]
    with pytest.raises(ValueError, match="only once"):
        referrers.enrich(out)
    with pytest.raises(ValueError, match="no 'path' column"):
        referrers.enrich(pa.table({"referrer": ["x"]}))


def test_site_hosts_are_normalised() -> None:
    assert ReferrerEnricher(["WWW.Example.COM.", "example.com", "shop.test:8443"]).site_hosts == (
        "example.com", "shop.test")
    assert normalize_host("[2001:db8::1]:443") == "[2001:db8::1]"
