"""The Dagster resource for the Parquet lake."""


from dagster import ConfigurableResource

from logstack_dagster.lake.layout import Lake
from logstack_dagster.lake.manifest import Manifest


class LakeResource(ConfigurableResource):
    """The lake's root: a local path or a pyarrow filesystem URI such as `s3://bucket/lake`."""

    uri: str

    def open(self) -> Lake:
        return Lake.open(self.uri)

    def manifest(self, cluster_id: str, topic: str) -> Manifest:
        return Manifest(self.open(), cluster_id, topic)
