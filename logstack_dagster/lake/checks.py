"""Asset checks on the Parquet lake: reconciliation with the manifest, and freshness."""

from datetime import datetime, timezone

from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    asset_check,
)

from logstack_dagster.alerts import AlertResource
from logstack_dagster.ingest.resources import KafkaResource
from logstack_dagster.lake.reconcile import Reconciliation, reconcile
from logstack_dagster.lake.resources import LakeResource
from logstack_dagster.settings import load_settings

RECONCILIATION = "ingest_reconciliation"


def reconciliation_evaluation(result: Reconciliation, scope: str) -> AssetCheckEvaluation:
    """The check's evaluation for a reconciliation of `scope` (a run id, or `all`)."""
    return AssetCheckEvaluation(
        asset_key=AssetKey("requests_lake"), check_name=RECONCILIATION, passed=result.passed,
        severity=AssetCheckSeverity.ERROR,
        metadata={"scope": scope, "records": result.records, "rows": result.rows,
                  "quarantined": result.quarantined, "files": result.files,
                  "problems": "\n".join([*result.mismatches, *result.gaps][:20]) or "none"},
    )


@asset_check(
    asset="requests_lake",
    name=RECONCILIATION,
    description=(
        "Records read from the topic equal rows in the lake plus lines in the quarantine: "
        "every commit's counts add up, every file holds the rows its commit names, and no "
        "partition has offsets missing between commits. Each ingest run reports it for its "
        "own commits; run by hand it covers the whole lake."
    ),
)
def ingest_reconciliation(kafka: KafkaResource, lake: LakeResource,
                          alerts: AlertResource) -> AssetCheckResult:
    result = reconcile(lake.manifest(kafka.cluster_id(), kafka.topic))
    evaluation = reconciliation_evaluation(result, "all")
    if not result.passed:
        alerts.send("logstack: the lake does not reconcile with its manifest",
                    evaluation.metadata)
    return AssetCheckResult(passed=evaluation.passed, severity=evaluation.severity,
                            metadata=evaluation.metadata)


@asset_check(
    asset="requests_lake",
    name="newest_event_freshness",
    description=(
        "Age of the newest hour that holds rows, against LOGSTACK_FRESHNESS_HOURS. Warns "
        "only: logs of the past are often loaded on purpose."
    ),
)
def newest_event_freshness(kafka: KafkaResource, lake: LakeResource) -> AssetCheckResult:
    hours = [entry.hour for commit in lake.manifest(kafka.cluster_id(), kafka.topic).commits()
             for entry in commit.files if entry.table == "requests"]
    if not hours:
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.WARN,
                                metadata={"newest_hour": "none"})
    newest = datetime.strptime(max(hours), "%Y-%m-%dT%H:00:00Z").replace(tzinfo=timezone.utc)
    age = (datetime.now(timezone.utc) - newest).total_seconds() / 3600
    limit = load_settings().freshness_hours
    return AssetCheckResult(
        passed=age <= limit + 1, severity=AssetCheckSeverity.WARN,
        metadata={"newest_hour": newest.isoformat(), "age_hours": round(age, 1),
                  "limit_hours": limit},
    )
