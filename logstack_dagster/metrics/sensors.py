"""The sensor that evaluates the metric assets' automation conditions (late data)."""

from dagster import AssetSelection, AutomationConditionSensorDefinition, DefaultSensorStatus

from logstack_dagster.settings import load_settings

# It replaces Dagster's default automation sensor for these assets, so it can have a
# name and description of its own and the interval of LOGSTACK_SENSOR_INTERVAL_SECONDS.
late_data_automation_sensor = AutomationConditionSensorDefinition(
    name="late_data_automation_sensor",
    target=AssetSelection.groups("metrics"),
    minimum_interval_seconds=load_settings().sensor_interval_seconds,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Rebuilds an hour of the metric tables when its lake partition was materialized "
        "again since that hour was last built (late lines), and only that hour."
    ),
)
