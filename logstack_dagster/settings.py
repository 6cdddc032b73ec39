"""Every environment variable logstack reads, read here and nowhere else.

Commands and Dagster resources take a `Settings` and pass its values on, so a test
can build one by hand and a deployment can steer everything from the environment.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from logstack_dagster.errors import LogstackError

DEFAULT_TOPIC = "requests"
DEFAULT_PARTITIONS = 2
DEFAULT_FIRST_HOUR = "1995-01-01-00:00"

# Client settings for real clusters. They pass through to both Kafka clients; secrets are
# kept out of every repr, log line and error message (see `Settings.__repr__`).
_KAFKA_SECURITY_VARS = {
    "KAFKA_SECURITY_PROTOCOL": "security.protocol",
    "KAFKA_SASL_MECHANISM": "sasl.mechanism",
    "KAFKA_SASL_USERNAME": "sasl.username",
    "KAFKA_SASL_PASSWORD": "sasl.password",
    "KAFKA_SSL_CAFILE": "ssl.ca.location",
}
_SECRET_KEYS = {"sasl.password"}


class SettingsError(LogstackError):
    """A setting from the environment or a flag has a value logstack cannot use."""


@dataclass(frozen=True)
class Settings:
    """Where logstack keeps its state and which broker and topic it reads.

    `brokers` is None when no `KAFKA_BROKERS` is set: the embedded broker is then used.
    """

    home: Path
    brokers: str | None = None
    topic: str = DEFAULT_TOPIC
    partitions: int = DEFAULT_PARTITIONS
    lake_uri: str | None = None
    log_format: str | None = None
    geoip_city_db: str | None = None
    geoip_asn_db: str | None = None
    site_hosts: tuple[str, ...] = ()
    kafka_security: dict[str, str] = field(default_factory=dict)
    first_hour: str = DEFAULT_FIRST_HOUR
    parse_failure_warn: float = 0.001
    parse_failure_error: float = 0.01
    freshness_hours: float = 2.0
    alert_webhook: str | None = None
    s3_endpoint: str | None = None
    s3_region: str | None = None
    flow_processes: int = 1
    flow_workers: int = 1
    sensor_interval_seconds: int = 30
    dagster_executor: str = "in_process"

    @property
    def lake(self) -> str:
        """The lake's root as a local path or a pyarrow filesystem URI.

        For `s3://` the endpoint and region settings join the URI's query (where
        pyarrow reads them), unless it names them itself. Credentials never do.
        """
        uri = self.lake_uri or str(self.home / "lake")
        if not uri.startswith("s3://") or not (self.s3_endpoint or self.s3_region):
            return uri
        base, _, query = uri.partition("?")
        options = dict(parse_qsl(query))
        if self.s3_endpoint:
            scheme, _, host = self.s3_endpoint.rpartition("://")
            options.setdefault("endpoint_override", host.rstrip("/"))
            options.setdefault("scheme", scheme or "https")
        if self.s3_region:
            options.setdefault("region", self.s3_region)
        return f"{base}?{urlencode(options, safe=':')}"

    @property
    def duckdb_path(self) -> Path:
        return self.home / "metrics.duckdb"

    @property
    def broker_dir(self) -> Path:
        return self.home / "broker"

    @property
    def recovery_dir(self) -> Path:
        return self.home / "recovery"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    def with_overrides(self, **values: object) -> Settings:
        """A copy with the given fields replaced; None values leave a field as it is."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})

    def __repr__(self) -> str:
        shown = {k: ("***" if k in _SECRET_KEYS else v) for k, v in self.kafka_security.items()}
        return (
            f"Settings(home={str(self.home)!r}, brokers={self.brokers!r}, "
            f"topic={self.topic!r}, partitions={self.partitions}, lake={self.lake!r}, "
            f"kafka_security={shown!r})"
        )


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read the settings from `environ` (the process environment by default)."""
    env = os.environ if environ is None else environ
    home = Path(env.get("LOGSTACK_HOME") or ".logstack").expanduser().resolve()
    partitions_text = env.get("KAFKA_PARTITIONS") or str(DEFAULT_PARTITIONS)
    if not partitions_text.isdigit() or int(partitions_text) < 1:
        raise SettingsError(
            f"KAFKA_PARTITIONS must be a whole number >= 1, not {partitions_text!r}")

    security = {key: env[var] for var, key in _KAFKA_SECURITY_VARS.items() if env.get(var)}
    return Settings(
        home=home,
        brokers=env.get("KAFKA_BROKERS") or None,
        topic=_topic(env, "KAFKA_TOPIC"),
        partitions=int(partitions_text),
        lake_uri=env.get("LOGSTACK_LAKE") or None,
        log_format=env.get("LOGSTACK_FORMAT") or None,
        geoip_city_db=env.get("GEOIP_CITY_DB") or None,
        geoip_asn_db=env.get("GEOIP_ASN_DB") or None,
        site_hosts=_hosts(env, "LOGSTACK_SITE_HOSTS"),
        kafka_security=security,
        first_hour=_first_hour(env, "LOGSTACK_FIRST_HOUR"),
        parse_failure_warn=_share(env, "LOGSTACK_PARSE_FAILURE_WARN", 0.001),
        parse_failure_error=_share(env, "LOGSTACK_PARSE_FAILURE_ERROR", 0.01),
        freshness_hours=_hours(env, "LOGSTACK_FRESHNESS_HOURS", 2.0),
        alert_webhook=env.get("LOGSTACK_ALERT_WEBHOOK") or None,
        s3_endpoint=_endpoint(env, "LOGSTACK_S3_ENDPOINT"),
        s3_region=env.get("LOGSTACK_S3_REGION") or None,
        flow_processes=_count(env, "LOGSTACK_FLOW_PROCESSES", 1),
        flow_workers=_count(env, "LOGSTACK_FLOW_WORKERS", 1),
        sensor_interval_seconds=_count(env, "LOGSTACK_SENSOR_INTERVAL_SECONDS", 30),
        dagster_executor=_choice(env, "LOGSTACK_DAGSTER_EXECUTOR", EXECUTORS),
    )


EXECUTORS = ("in_process", "multiprocess")

# Kafka's own rule for topic names. The name is also a folder of the lake's manifest and
# of the recovery store, so nothing else may pass: `../x` would write outside them.
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def topic_name_problem(name: str) -> str | None:
    """Why `name` cannot be a topic's name, or None when it can."""
    if not _TOPIC_NAME.fullmatch(name) or name in (".", ".."):
        return (f"{name!r} is not a Kafka topic name: 1 to 249 letters, digits, '.', '_' "
                "or '-', and not '.' or '..'")
    return None


def _topic(env, name: str) -> str:
    text = env.get(name) or DEFAULT_TOPIC
    problem = topic_name_problem(text)
    if problem:
        raise SettingsError(f"{name}: {problem}")
    return text


def _first_hour(env, name: str) -> str:
    """An hour as Dagster's hourly partitions take it, e.g. 2024-05-01-00:00."""
    from datetime import datetime

    text = env.get(name) or DEFAULT_FIRST_HOUR
    try:
        datetime.strptime(text, "%Y-%m-%d-%H:%M")
    except ValueError:
        raise SettingsError(f"{name} must be an hour like {DEFAULT_FIRST_HOUR}, "
                            f"not {text!r}") from None
    return text


def _choice(env, name: str, choices: tuple[str, ...]) -> str:
    """One of `choices` (the first when unset)."""
    text = env.get(name) or choices[0]
    if text not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, not {text!r}")
    return text


def _count(env, name: str, default: int) -> int:
    text = env.get(name) or str(default)
    if not text.isdigit() or int(text) < 1:
        raise SettingsError(f"{name} must be a whole number >= 1, not {text!r}")
    return int(text)


def _endpoint(env, name: str) -> str | None:
    """An S3-compatible endpoint: `http://host:port`, `https://host` or `host:port`."""
    text = (env.get(name) or "").strip()
    if not text:
        return None
    scheme, _, host = text.rpartition("://")
    if scheme not in ("", "http", "https") or not host.strip("/") or "/" in host.strip("/"):
        raise SettingsError(f"{name} must look like http://host:port or https://host, "
                            f"not {text!r}")
    return text


def _share(env, name: str, default: float) -> float:
    return _number(env, name, default, lambda v: 0.0 <= v <= 1.0, "a share between 0 and 1")


def _hours(env, name: str, default: float) -> float:
    return _number(env, name, default, lambda v: v > 0, "a number of hours above 0")


def _number(env, name: str, default: float, fits, meaning: str) -> float:
    """A float setting, `default` when unset; one that does not `fit` names `meaning`."""
    text = env.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not fits(value):
        raise SettingsError(f"{name} must be {meaning}, not {text!r}")
    return value


def _hosts(env, name: str) -> tuple[str, ...]:
    """A comma-separated list of host names, lower-cased, without blanks or repeats."""
    hosts = (h.strip().lower() for h in (env.get(name) or "").split(","))
    named = tuple(dict.fromkeys(h for h in hosts if h))
    bad = [h for h in named if "/" in h or " " in h]
    if bad:
        raise SettingsError(f"{name} must list host names separated by commas, not {bad[0]!r}")
    return named
