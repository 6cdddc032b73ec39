"""Alerts reach a webhook as one Slack-compatible JSON message."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from logstack_dagster.alerts import AlertResource, alert_body
from logstack_dagster.ingest import topic


class Webhook:
    """An HTTP server on 127.0.0.1 that keeps every JSON body posted to it."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def test_alert_is_posted_once_with_text_and_details(webhook):
    assert AlertResource(webhook=webhook.url).send("disk full", {"path": "/lake", "free": 0})
    assert webhook.received == [alert_body("disk full", {"path": "/lake", "free": 0})]
    assert webhook.received[0]["text"].startswith("*disk full*")


def test_without_a_webhook_the_log_alone(caplog):
    assert AlertResource().send("something", {"n": 1}) is False
    assert "ALERT something" in caplog.text


def test_a_webhook_that_is_down_never_fails_the_caller():
    assert AlertResource(webhook="http://127.0.0.1:9/hook", timeout=1).send("x", {}) is False


@pytest.mark.integration
def test_failing_parse_check_posts_an_alert(settings, cluster, webhook):
    from dataclasses import replace

    from logstack_dagster.demo import materialize_lake
    from logstack_dagster.materialize import JobFailed, open_instance, run_ingest

    settings = replace(settings, alert_webhook=webhook.url)
    good = b'203.0.113.9 - - [22/Jan/2019:00:10:00 +0000] "GET /a HTTP/1.1" 200 5 "-" "x"'
    topic.ensure_topic(cluster, settings.topic, 1)
    topic.produce(cluster, settings.topic, [good] * 10 + [b"\x16\x03\x01 garbage"] * 5, 1)
    instance = open_instance(settings.dagster_home)
    run_ingest(instance, settings)

    # A third of the hour's lines failed to parse: the blocking check fails the run.
    with pytest.raises(JobFailed):
        materialize_lake(settings, instance)

    titles = [m["title"] for m in webhook.received]
    assert any("failed to parse" in t for t in titles)
    message = next(m for m in webhook.received if "failed to parse" in m["title"])
    assert message["details"]["quarantined"] == 5
    assert message["details"]["lines"] == 15
