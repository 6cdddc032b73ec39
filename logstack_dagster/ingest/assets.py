"""The raw topic, as Dagster sees it: an observable source asset."""


from dagster import DataVersion, MetadataValue, ObserveResult, observable_source_asset

from logstack_dagster.ingest.resources import KafkaResource
from logstack_dagster.lake.resources import LakeResource


@observable_source_asset(
    name="raw_topic",
    group_name="ingest",
    description=(
        "Raw access-log lines in the Kafka-API topic, one record per line, as produced. "
        "Grain: one record per log line. Observed from the broker's end offsets (metadata "
        "only, nothing is consumed); lag is what the lake's manifest has not ingested yet."
    ),
)
def raw_topic(kafka: KafkaResource, lake: LakeResource) -> ObserveResult:
    ends = kafka.end_offsets()
    ingested = lake.manifest(kafka.cluster_id(), kafka.topic).next_offsets()
    lag = sum(max(0, end - ingested.get(p, 0)) for p, end in ends.items())
    version = ",".join(f"{p}:{end}" for p, end in sorted(ends.items()))
    return ObserveResult(
        data_version=DataVersion(version or "empty"),
        metadata={
            "topic": kafka.topic,
            "partitions": len(ends),
            "end_offsets": MetadataValue.json({str(p): o for p, o in ends.items()}),
            "ingested_offsets": MetadataValue.json({str(p): o for p, o in ingested.items()}),
            "lag": lag,
        },
    )
