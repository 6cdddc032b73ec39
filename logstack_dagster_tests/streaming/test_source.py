"""The topic source (`logstack_dagster/streaming/source.py`) on the embedded broker."""

import socket

from confluent_kafka import OFFSET_BEGINNING, Consumer

from logstack_dagster.ingest import topic
from logstack_dagster.streaming.source import TopicSource, first_offset


def test_a_fresh_reader_asks_where_the_partition_starts_and_reads_it_all(settings, cluster,
                                                                         tmp_path):
    log = tmp_path / "five.log"
    log.write_bytes(b"".join(b"line %d\n" % n for n in range(5)))
    topic.ensure_topic(cluster, settings.topic, 1)
    topic.produce_file(cluster, settings.topic, log, 1)

    source = TopicSource([settings.brokers], settings.topic, tail=False, add_config={})
    reader = source.build_part("read_topic", f"0-{settings.topic}", None)
    try:
        # The offset the broker gave, not librdkafka's "beginning" (a negative sentinel).
        assert reader.next_offset == 0
        batches = []
        while not reader.at_end:
            batches += reader.next_batch()
    finally:
        reader.close()
    assert [o for b in batches for o in b.offsets] == [0, 1, 2, 3, 4]
    assert [v for b in batches for v in b.values] == [b"line %d" % n for n in range(5)]


def test_a_broker_that_does_not_answer_leaves_the_start_to_the_client():
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    consumer = Consumer({"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "unused",
                         "log_level": "0"})
    try:
        assert first_offset(consumer, "nowhere", 0) == OFFSET_BEGINNING
    finally:
        consumer.close()
