"""The hourly partitions shared by the lake asset and every metric asset (UTC)."""

from dagster import HourlyPartitionsDefinition

from logstack_dagster.settings import load_settings

# Access logs worth counting go back decades (the NASA logs of 1995 are still studied),
# so the first hour is a setting rather than a guess.
hourly_partitions = HourlyPartitionsDefinition(
    start_date=load_settings().first_hour, timezone="UTC", fmt="%Y-%m-%d-%H:%M",
)
