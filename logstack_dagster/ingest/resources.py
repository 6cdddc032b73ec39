"""The Dagster resource for the broker that holds the raw topic."""

from pathlib import Path

from dagster import ConfigurableResource

from logstack_dagster.ingest.topic import Cluster, end_offsets, resolve_cluster, topic_metadata
from logstack_dagster.settings import Settings, load_settings


class KafkaResource(ConfigurableResource):
    """A Kafka-API broker and the raw topic on it.

    `brokers` empty means the embedded broker whose state lives under `home`
    (`LOGSTACK_HOME`), which is also where the dataflow keeps its recovery store.
    """

    brokers: str = ""
    topic: str = "requests"
    home: str = ".logstack"

    def settings(self) -> Settings:
        # SASL and TLS settings are read from the environment when needed, never kept as
        # resource config: Dagster shows config in its UI and stores it with each run.
        return Settings(home=Path(self.home), brokers=self.brokers or None, topic=self.topic,
                        kafka_security=load_settings().kafka_security)

    def cluster(self) -> Cluster:
        return resolve_cluster(self.settings())

    def cluster_id(self) -> str:
        return topic_metadata(self.cluster(), self.topic)[0]

    def end_offsets(self) -> dict[int, int]:
        """Per partition, the next offset the broker will write (read from metadata)."""
        return end_offsets(self.cluster(), self.topic)
