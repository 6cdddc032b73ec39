"""The topic as a Bytewax source of whole RawBatches, one per poll of a partition.

Bytewax's `KafkaSource` turns every record into a `KafkaSourceMessage` object that the
dataflow then takes apart again; at a million lines that alone cost about a tenth of the
run. This source keeps its partitions and names, and hands on each poll's records as the
columns of one RawBatch.

A partition starts where the lake's commits of it end (`starts`, from the manifest), not
where Bytewax's recovery store says it was read to: the sink then need not write at every
snapshot, and writes fewer, larger files. The lake's commits of a partition are whole from
its first record read up to the last one committed, since each run starts where they end
and each sink partition commits its buffers one after the other, in offset order.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from bytewax.connectors.kafka import KafkaSource
from bytewax.inputs import StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition
from confluent_kafka import KafkaError as ConfluentKafkaError

from logstack_dagster.streaming.batch import RawBatch

# Records per poll of one partition: large enough that the per-batch work of the dataflow
# is spread over many lines, small enough to keep a batch's tables a few MB.
POLL_RECORDS = 20_000
READ_WAIT, FOLLOW_WAIT = 0.005, 0.05  # seconds a poll waits for records; see below
# Following the topic, an idle partition hands on an empty batch this often: Bytewax calls
# a sink partition only when items come to it, and the sink writes what it holds once it
# has waited long enough, and reports a failed write, only when called.
IDLE_TICK = 1.0
WATERMARK_TIMEOUT = 2.0  # seconds to wait for a partition's first offset


class TopicSource(KafkaSource):
    """The records of every partition of `topic`, as one RawBatch per poll."""

    def __init__(self, brokers: list[str], topic: str, tail: bool,
                 add_config: dict[str, str], batch_size: int = POLL_RECORDS,
                 until: Path | None = None, starts: dict[int, int] | None = None):
        super().__init__(brokers, [topic], tail=tail, add_config=add_config,
                         batch_size=batch_size)
        self.topic = topic
        self.until = until
        self.starts = starts or {}

    def build_part(self, step_id: str, for_part: str,
                   resume_state: int | None) -> TopicPartitionReader:
        index, topic = for_part.split("-", 1)
        if topic != self.topic:
            raise RuntimeError(f"the recovery store holds topic {topic!r}, not {self.topic!r}")
        # `resume_state` is where the last snapshot says this partition was read to; what
        # was read after the lake's last commit is read again (see the module's doc).
        config = {
            # Where to start comes from the lake's manifest, not from a consumer group.
            "group.id": "BYTEWAX_IGNORED",
            "enable.auto.commit": "false",
            "bootstrap.servers": ",".join(self._brokers),
            "enable.partition.eof": str(not self._tail).lower(),
            # Fetch in large pieces: a poll can then fill its batch (about 5 MB of a
            # combined log) from the client's queue. Each partition has a client of its own,
            # holding up to a fetch and a queue of these sizes: 16 MB each cost a 4-partition
            # topic 50 to 90 MB more memory than 8 MB each, for no speed.
            "fetch.max.bytes": str(8 << 20),
            "max.partition.fetch.bytes": str(8 << 20),
            "queued.max.messages.kbytes": str(8 << 10),
            # Once that queue is full, librdkafka waits this long before fetching again
            # (1 s by default): the dataflow drains it in a fraction of that and then stalls.
            "fetch.queue.backoff.ms": "10",
            # An offset the broker no longer has (deleted by retention after the run that
            # read up to it) restarts the partition at its first record still there; the
            # default, the end, would skip every record in between.
            "auto.offset.reset": "earliest",
            **self._add_config,
        }
        if not self._tail:
            # The end of a partition is known from a fetch that found nothing, which the
            # broker holds for this long (500 ms by default) waiting for new records.
            config.setdefault("fetch.wait.max.ms", "50")
        start = self.starts.get(int(index), OFFSET_BEGINNING)
        return TopicPartitionReader(config, topic, int(index), start, self._batch_size,
                                    self._tail, self.until)


class TopicPartitionReader(StatefulSourcePartition[RawBatch, int]):
    """Reads one partition from offset `start`; its state is the next offset not handed on.

    Following the topic with `until` (a JSON file of end offsets by partition, written
    once the producer is done), the partition ends when it is idle at its end offset.

    Batches are cut by count, not by how much one poll returned: `batch_size` records
    each, the last one short. The same records then always make the same batches, so the
    format detected from a partition's first batch, and with it the output, does not
    depend on timing or on how many processes and workers run. Following the topic
    without `until`, a batch is also handed on when a poll brings nothing more.
    """

    def __init__(self, config: dict, topic: str, partition: int, start: int, batch_size: int,
                 tail: bool, until: Path | None = None):
        self.consumer = Consumer(config)
        if start == OFFSET_BEGINNING:
            start = first_offset(self.consumer, topic, partition)
        self.consumer.assign([TopicPartition(topic, partition, start)])
        self.topic = topic
        self.partition = partition
        self.next_offset = start
        self.batch_size = batch_size
        self.tail = tail
        self.until = until
        # How long a poll waits for records. A worker polls its partitions in turn, and one
        # whose client has nothing queued at the moment holds up the others this long:
        # 50 ms made a 4-partition topic read by one worker about 10 % slower. Following
        # the topic, an idle partition is polled this often, so the wait is longer there.
        self.wait = FOLLOW_WAIT if tail else READ_WAIT
        self.at_end = False
        self.ticked = time.monotonic()
        self.offsets: list[int] = []
        self.stamps: list[int] = []
        self.values: list[bytes] = []

    def next_batch(self) -> list[RawBatch]:
        if self.at_end:
            raise StopIteration()
        messages = self.consumer.consume(self.batch_size - len(self.offsets), self.wait)
        # Per-record Python work holds the interpreter lock the other workers of the process
        # wait for: the message methods are mapped over the list where they can be (about
        # 40 ns a record against 90 for a comprehension), and offsets are counted.
        if any(map(Message.error, messages)):
            failed = [m for m in messages if m.error() is not None]
            error = failed[0].error()
            if error.code() != ConfluentKafkaError._PARTITION_EOF:
                raise RuntimeError(f"reading topic {self.topic!r} partition "
                                   f"{self.partition} failed: {error}")
            # Hand on what came before the end; stop at the next call.
            self.at_end = True
            messages = messages[:messages.index(failed[0])]
        offsets, stamps, values = self.offsets, self.stamps, self.values
        if messages:
            first, last = messages[0].offset(), messages[-1].offset()
            if last - first + 1 == len(messages):
                offsets.extend(range(first, last + 1))
            else:  # gaps: transaction markers, a compacted topic
                offsets.extend([m.offset() for m in messages])
            stamps.extend([m.timestamp()[1] for m in messages])
            taken = list(map(Message.value, messages))
            values.extend(taken if None not in taken else [v or b"" for v in taken])

        full = len(offsets) >= self.batch_size
        idle = self.tail and not messages
        if idle and self.until is not None:
            # Caught up while following: stop here if the producer has said this is the end.
            end = until_offset(self.until, self.partition)
            # Before its first record the position is a sentinel (below 0).
            reached = offsets[-1] + 1 if offsets else max(self.next_offset, 0)
            if end is not None and reached < end:
                # A transaction's marker takes an offset no record has, so a partition can
                # end past its last record; the client's position moves past markers.
                here = TopicPartition(self.topic, self.partition)
                reached = max(reached, self.consumer.position([here])[0].offset)
            self.at_end = end is not None and reached >= end
        # Following a topic, what came is handed on when a poll brings nothing more. Loading
        # a file (with `until`) it is not: a producer that pauses would cut batches where a
        # reading run does not, and a line's neighbours (the hour of a quarantined line),
        # even a partition's detected format, would depend on timing.
        short = idle and self.until is None
        if not offsets or not (full or short or self.at_end):
            if idle and not offsets and time.monotonic() - self.ticked >= IDLE_TICK:
                self.ticked = time.monotonic()
                return [RawBatch(self.topic, self.partition, [], [], [])]
            return []
        batch = RawBatch(self.topic, self.partition, offsets, stamps, values)
        self.offsets, self.stamps, self.values = [], [], []
        self.next_offset = offsets[-1] + 1
        return [batch]

    def snapshot(self) -> int:
        # Kept for Bytewax; a resumed run starts from the lake's commits instead.
        return self.next_offset

    def close(self) -> None:
        self.consumer.close()


def first_offset(consumer: Consumer, topic: str, partition: int) -> int:
    """The first offset `partition` holds, or OFFSET_BEGINNING if the broker does not say.

    Given OFFSET_BEGINNING, librdkafka asks for the offset only when a timer of 500 ms runs
    out, which it starts before it knows the partition's leader: the first record of a fresh
    run came after about 585 ms, against 80 ms when asked here first (4 ms). A broker that
    does not answer in `WATERMARK_TIMEOUT` leaves it to librdkafka, as before.
    """
    try:
        low, _ = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                timeout=WATERMARK_TIMEOUT)
    except KafkaException:
        return OFFSET_BEGINNING
    # A negative answer would be one of librdkafka's logical offsets (-1 is the end).
    return low if low >= 0 else OFFSET_BEGINNING


def until_offset(path: Path, partition: int) -> int | None:
    """The end offset `path` gives for `partition`, or None while the file is not there.
    The file is written whole under another name and renamed, so it is never half-read."""
    try:
        ends = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return int(ends.get(str(partition), 0))


def write_until(path: Path, ends: dict[int, int]) -> None:
    """Tell following dataflows that each partition ends at `ends[partition]`."""
    staged = path.with_name(path.name + ".tmp")
    staged.write_text(json.dumps({str(p): offset for p, offset in ends.items()}))
    staged.replace(path)
