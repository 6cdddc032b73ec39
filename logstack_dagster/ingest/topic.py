"""The raw topic: finding the broker, creating the topic, producing lines, reading offsets.

Two clients, each where it is strongest: kafka-python for cheap metadata calls (topic
creation, end offsets) and confluent-kafka's batching producer for throughput.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from logstack_dagster.errors import LogstackError
from logstack_dagster.ingest import broker
from logstack_dagster.settings import Settings

READ_CHUNK = 1 << 20
SPREAD = 1000
# The largest record the client sends: librdkafka's default `message.max.bytes`.
RECORD_BYTES = 1_000_000

# kafka-python names the same client settings differently from librdkafka.
_KAFKA_PYTHON_NAMES = {
    "security.protocol": "security_protocol",
    "sasl.mechanism": "sasl_mechanism",
    "sasl.username": "sasl_plain_username",
    "sasl.password": "sasl_plain_password",
    "ssl.ca.location": "ssl_cafile",
}


class BrokerUnreachable(LogstackError):
    """No Kafka broker answered at the configured address."""


@dataclass(frozen=True)
class Cluster:
    """A broker address list and the client settings needed to talk to it.

    Its repr names the security settings but hides their values: a password must not
    reach a log line or an error message by way of a cluster printed in it.
    """

    brokers: str
    security: dict[str, str]

    def __repr__(self) -> str:
        return f"Cluster(brokers={self.brokers!r}, security={sorted(self.security)!r})"

    def librdkafka_config(self, **extra: object) -> dict[str, object]:
        """Settings for confluent-kafka clients (and the Bytewax connector)."""
        return {"bootstrap.servers": self.brokers, **self.security, **extra}

    def kafka_python_config(self) -> dict[str, object]:
        """Settings for kafka-python clients."""
        config: dict[str, object] = {"bootstrap_servers": self.brokers.split(",")}
        for key, value in self.security.items():
            config[_KAFKA_PYTHON_NAMES[key]] = value
        return config


def resolve_cluster(settings: Settings) -> Cluster:
    """The cluster named by `KAFKA_BROKERS`, else the running embedded broker."""
    if settings.brokers:
        return Cluster(settings.brokers, dict(settings.kafka_security))

    state = broker.read_state(settings.broker_dir)
    if state is None or not state.alive:
        raise BrokerUnreachable(
            "no broker: set KAFKA_BROKERS to a Kafka or Redpanda address, or start the "
            "embedded one with `logstack broker start`"
        )
    return Cluster(state.address, {})


def wait_reachable(cluster: Cluster, timeout: float = 10.0) -> None:
    """Return once a TCP connection to one of the brokers succeeds, else raise.

    Retries with a growing pause, so a broker that is still starting is waited for.
    """
    deadline = time.monotonic() + timeout
    pause = 0.1
    while True:
        for address in cluster.brokers.split(","):
            host, _, port = address.strip().rpartition(":")
            try:
                with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
                    return
            except (OSError, ValueError):
                continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrokerUnreachable(
                f"no Kafka broker answered at {cluster.brokers} within {timeout:g} s"
            )
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, 2.0)


def ensure_topic(cluster: Cluster, topic: str, partitions: int) -> int:
    """Create `topic` with `partitions` partitions unless it exists; return its count."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    try:
        admin = KafkaAdminClient(**cluster.kafka_python_config(), request_timeout_ms=10_000,
                                 bootstrap_timeout_ms=10_000)
    except KafkaError as exc:
        raise BrokerUnreachable(_refused(cluster, exc)) from None
    try:
        if topic not in admin.list_topics():
            try:
                admin.create_topics([NewTopic(topic, partitions, 1)])
            except TopicAlreadyExistsError:
                pass
        described = admin.describe_topics([topic])
        return len(described[0]["partitions"])
    except KafkaError as exc:
        raise BrokerUnreachable(_refused(cluster, exc)) from None
    finally:
        admin.close()


def _refused(cluster: Cluster, exc: Exception) -> str:
    """Why the broker took no requests; names the security settings in use, not values."""
    hint = ""
    if cluster.security:
        hint = f" (with {', '.join(sorted(cluster.security))} set: check them)"
    return f"the Kafka broker at {cluster.brokers} took no requests{hint}: {exc}"


def topic_metadata(cluster: Cluster, topic: str, timeout: float = 10.0) -> tuple[str, int]:
    """The cluster id and the partition count of `topic` (0 when it does not exist)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    # Asking for every topic, not this one: a request naming a missing topic makes brokers
    # with auto-creation on (Tansu among them) create it.
    try:
        metadata = AdminClient(cluster.librdkafka_config()).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerUnreachable(
            f"no Kafka broker answered at {cluster.brokers} within {timeout:g} s: "
            f"{exc.args[0].str() if exc.args else exc}") from None
    found = metadata.topics.get(topic)
    count = 0 if found is None or found.error is not None else len(found.partitions)
    return metadata.cluster_id or "unknown-cluster", count


def end_offsets(cluster: Cluster, topic: str) -> dict[int, int]:
    """Next offset to be written, per partition, read from the broker's metadata.

    Tansu's memory store answers ListOffsets with the base offset of the newest batch
    plus one, which can be below the true end. It is never above it, and it always
    moves past what was ingested once a new batch arrives, so comparing it with the
    ingested offsets still tells whether there is new data. The exact end comes from the
    dataflow's EOF, which uses the fetch high-water mark.
    """
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    # kafka-python waits long for a broker that is down; a plain connect fails fast.
    wait_reachable(cluster, timeout=5.0)
    try:
        consumer = KafkaConsumer(**cluster.kafka_python_config(), request_timeout_ms=10_000)
    except KafkaError as exc:
        raise BrokerUnreachable(f"no Kafka broker answered at {cluster.brokers}: {exc}") from None
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        offsets = consumer.end_offsets([TopicPartition(topic, p) for p in sorted(partitions)])
        return {tp.partition: offset for tp, offset in offsets.items()}
    except KafkaError as exc:
        raise BrokerUnreachable(f"reading offsets from {cluster.brokers} failed: {exc}") from None
    finally:
        consumer.close()


def exact_end_offsets(cluster: Cluster, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """The true end offset of each partition, from the high-water mark of a fetch.

    Costs a fetch of at most one batch per partition; for checks and tests, not for the
    sensor's frequent ticks (see `end_offsets`).
    """
    listed = end_offsets(cluster, topic)
    consumer = _end_reader(cluster)
    try:
        return _fetched_ends(consumer, topic, listed, timeout)
    finally:
        consumer.close()


def ends_before(cluster: Cluster, topic: str, partitions: int, read: dict[int, int],
                timeout: float = 10.0) -> dict[int, int]:
    """The partitions of `topic` (which has `partitions`) that end before the offset `read`
    gives for them, each with its true end (0 for a partition the topic no longer has).

    A partition only grows, so one that ends before where it was read up to was deleted
    and made again, or lost its records with its broker. Costs one ListOffsets request
    per partition, and a fetch only for a partition that looks short.
    """
    from confluent_kafka import KafkaException, TopicPartition

    short = {p: 0 for p in read if p >= partitions}
    consumer = _end_reader(cluster)
    try:
        listed = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1]
                  for p in read if p < partitions}
        # The embedded broker's answer can be below the true end (see `end_offsets`).
        low = {p: end for p, end in listed.items() if end < read[p]}
        short.update(_fetched_ends(consumer, topic, low, timeout))
    except KafkaException as exc:
        raise BrokerUnreachable(f"reading the offsets of {topic!r} from {cluster.brokers} "
                                f"failed: {exc.args[0].str() if exc.args else exc}") from None
    finally:
        consumer.close()
    return {p: end for p, end in short.items() if end < read[p]}


def _end_reader(cluster: Cluster):
    from confluent_kafka import Consumer

    return Consumer(cluster.librdkafka_config(**{
        "group.id": "logstack-end-offsets", "enable.auto.commit": False,
        "enable.partition.eof": True}))


def _fetched_ends(consumer, topic: str, listed: dict[int, int],
                  timeout: float) -> dict[int, int]:
    """The high-water mark a fetch of each partition's last `listed` record brings back."""
    from confluent_kafka import TopicPartition

    if not listed:
        return {}
    consumer.assign([TopicPartition(topic, p, max(end - 1, 0)) for p, end in listed.items()])
    answered: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(answered) < len(listed) and time.monotonic() < deadline:
        for message in consumer.consume(100, 0.5):
            answered.add(message.partition())
    return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), cached=True)[1]
            for p in listed}


def iter_lines(stream: BinaryIO) -> Iterator[bytes]:
    """Every line of `stream` without its newline; a last line without one is kept.

    Reads what the stream has (`read1`), so lines from a pipe go on as they come rather
    than once a whole chunk has arrived."""
    read = getattr(stream, "read1", stream.read)
    rest = b""
    while chunk := read(READ_CHUNK):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


@dataclass(frozen=True)
class Progress:
    """How far producing has come: lines and bytes sent, seconds taken, bytes in all."""

    lines: int
    bytes: int
    seconds: float
    total_bytes: int | None = None
    finished: bool = False

    @property
    def lines_per_second(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else 0.0

    @property
    def share(self) -> float | None:
        """The share of the input sent, from 0 to 1; None when its size is unknown."""
        if not self.total_bytes:
            return None
        return min(self.bytes / self.total_bytes, 1.0)

    @property
    def seconds_left(self) -> float | None:
        """Estimated seconds to the end at the rate so far; None when it cannot be told."""
        share = self.share
        if share is None or share <= 0 or self.seconds <= 0:
            return None
        return self.seconds * (1 - share) / share

    def describe(self) -> str:
        """One line: ``1,200,000 lines  310,000 lines/s  42%  about 12 s left``."""
        text = f"{self.lines:,} lines  {self.lines_per_second:,.0f} lines/s"
        if self.finished:
            return f"{text}  done in {self.seconds:.1f} s"
        if self.share is not None:
            text += f"  {self.share:.0%}"
        left = self.seconds_left
        if left is not None:
            text += f"  about {_duration(left)} left"
        return text


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def produce(
    cluster: Cluster,
    topic: str,
    lines: Iterable[bytes],
    partitions: int = 1,
    progress: Callable[[Progress], None] | None = None,
    *,
    total_bytes: int | None = None,
    interval: float = 1.0,
) -> int:
    """Produce each line as one record of raw bytes; return how many the broker took.

    Runs of `SPREAD` consecutive lines go to one partition, then the next, so that the
    partitions fill evenly and each holds stretches of the log in its original order.
    `progress`, when given, is called about every `interval` seconds and once at the end;
    `total_bytes` (the input's size) lets it estimate the time left.
    Raises BrokerUnreachable when the broker refuses or loses records.
    """
    from confluent_kafka import KafkaError, KafkaException, Producer

    failures: list[str] = []

    def delivered(error, _message) -> None:
        if error is not None:
            failures.append(str(error))

    producer = Producer(cluster.librdkafka_config(**{
        "linger.ms": 20,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 500_000,
        "compression.type": "lz4",
        "enable.idempotence": False,
        "message.timeout.ms": 30_000,
        # A report per record would cost a Python call per line; failures still come back.
        "delivery.report.only.error": True,
    }))
    started = time.monotonic()
    next_report = started + interval
    sent = read = 0
    lines = iter(lines)
    too_long = unreadable = None
    # Ctrl-C stops at the next run of lines, then waits for what the client took. Known
    # limit: a run waits for SPREAD lines, so lines piped in slowly wait for their run.
    with DeferredInterrupt() as ctrl_c:
        while not too_long and not ctrl_c.asked:
            try:
                run = list(itertools.islice(lines, SPREAD))
            except OSError as exc:  # a failing disk: what was read before it still counts
                unreadable = exc
                break
            if not run:
                break
            if max(map(len, run)) > RECORD_BYTES:
                at = next(n for n, line in enumerate(run) if len(line) > RECORD_BYTES)
                too_long = (sent + at + 1, len(run[at]))
                run = run[:at]
            # One partition per run, handed to the client in one call.
            messages = [{"value": line} for line in run]
            partition = (sent // SPREAD) % partitions
            while messages:
                queued = producer.produce_batch(topic, messages, partition=partition,
                                                on_delivery=delivered)
                if queued == len(messages):
                    break
                # What the client did not take carries an `_error`; a full queue drains.
                refused = [m for m in messages if "_error" in m]
                error = refused[0]["_error"]
                if error.code() != KafkaError._QUEUE_FULL:
                    raise BrokerUnreachable(f"producing to {cluster.brokers} failed: {error}")
                for message in refused:
                    del message["_error"]
                messages = refused
                producer.poll(0.05)
            sent += len(run)
            read += sum(map(len, run)) + len(run)
            producer.poll(0)
            if progress is not None and sent % 10_000 == 0:
                now = time.monotonic()
                if now >= next_report:
                    progress(Progress(sent, read, now - started, total_bytes))
                    next_report = now + interval

        try:
            left = producer.flush(60)
        except KafkaException as exc:
            raise BrokerUnreachable(f"producing to {cluster.brokers} failed: {exc}") from exc
    if too_long and not failures and not left:
        number, size = too_long
        raise LogstackError(
            f"line {number:,} is {size:,} bytes, over the {RECORD_BYTES:,} bytes one record "
            f"may hold; the {number - 1:,} lines before it were produced, it and the rest "
            "were not")
    if unreadable and not failures and not left:
        raise LogstackError(
            f"reading the input failed after line {sent:,}: "
            f"{(unreadable.strerror or str(unreadable)).lower()}; the {sent:,} lines before "
            "were produced, the rest were not")
    if failures or left:
        reason = failures[0] if failures else f"{left} records still queued after 60 s"
        raise BrokerUnreachable(
            f"the broker at {cluster.brokers} did not take every record of topic "
            f"{topic!r}: {reason}"
        )
    if ctrl_c.asked:
        raise ProduceInterrupted(
            f"the first {sent:,} lines reached topic {topic!r}, the rest did not; producing "
            f"them again would count them twice: go on from line {sent + 1:,}")
    if progress is not None:
        progress(Progress(sent, read, time.monotonic() - started, total_bytes, finished=True))
    return sent


class ProduceInterrupted(KeyboardInterrupt):
    """Ctrl-C while producing, raised once what the client had taken is in the topic."""


class DeferredInterrupt:
    """Holds a first Ctrl-C (SIGINT) back until the code asks for it in `asked`; a second
    one interrupts at once. Without it, Ctrl-C could land between the client taking
    records and their count, and no one could say exactly which lines reached the topic.
    Only the main thread handles signals: elsewhere it does nothing."""

    def __init__(self) -> None:
        self.asked = False
        self._previous = None

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _on_sigint(self, signum, frame) -> None:
        if self.asked:
            raise KeyboardInterrupt
        self.asked = True


def produce_file(
    cluster: Cluster,
    topic: str,
    path: Path,
    partitions: int = 1,
    progress: Callable[[Progress], None] | None = None,
    *,
    interval: float = 1.0,
) -> int:
    """Produce every line of the file at `path`; return the line count."""
    with open(path, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        return produce(cluster, topic, iter_lines(stream), partitions, progress,
                       total_bytes=size or None, interval=interval)
