"""Every environment variable the platform reads, with its default.

Values are read when called, not at import, so tests and tools can point the platform at other
places by setting the environment. Secrets (source URLs with passwords, the Slack token) are not
read here: resources receive them through `dagster.EnvVar` so they never reach the UI.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_START_DATE = "2026-01-01"
DEFAULT_TIMEZONE = "UTC"

CRM_URL_VAR = "SHOPSMART_CRM_URL"
ORDERS_URL_VAR = "SHOPSMART_ORDERS_URL"
ONLINE_STORE_URL_VAR = "SHOPSMART_ONLINE_STORE_URL"
FEAST_REGISTRY_VAR = "SHOPSMART_FEAST_REGISTRY"
MLFLOW_TRACKING_URI_VAR = "SHOPSMART_MLFLOW_TRACKING_URI"


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def data_dir(root: Path | None = None) -> Path:
    """SHOPSMART_DATA_DIR: the demo sources, the lake and the online store live here (`root`
    instead, for a data directory of one's own: a test, a tool)."""
    if root is not None:
        return Path(root)
    return Path(_env("SHOPSMART_DATA_DIR") or "./data").expanduser().resolve()


def lake_dir(root: Path | None = None) -> Path:
    return data_dir(root) / "lake"


def default_crm_url(root: Path | None = None) -> str:
    return f"sqlite:///{data_dir(root) / 'sources' / 'crm.db'}"


def default_orders_url(root: Path | None = None) -> str:
    return f"sqlite:///{data_dir(root) / 'sources' / 'orders.db'}"


def feast_dir(root: Path | None = None) -> Path:
    """Feast's local files (SQLite online store, file registry) under the data dir."""
    return data_dir(root) / "feast"


def default_online_store_url(root: Path | None = None) -> str:
    """Feast's online store: a SQLite file under the data dir unless SHOPSMART_ONLINE_STORE_URL
    names a PostgreSQL database."""
    return f"sqlite:///{feast_dir(root) / 'online_store.db'}"


def online_store_url() -> str:
    """SHOPSMART_ONLINE_STORE_URL, else the SQLite file under the data dir (the resource reads
    the secret through EnvVar; this is for the store's kind)."""
    return _env(ONLINE_STORE_URL_VAR) or default_online_store_url()


def online_store_takes_one_writer() -> bool:
    """SQLite takes one writer at a time: the steps writing Feast then share a pool."""
    return online_store_url().startswith("sqlite")


def default_feast_registry(root: Path | None = None) -> str:
    """Feast's registry: a file under the data dir unless SHOPSMART_FEAST_REGISTRY names a SQL
    registry (postgresql+psycopg://…)."""
    return str(feast_dir(root) / "registry.db")


def mlflow_dir(root: Path | None = None) -> Path:
    return data_dir(root) / "mlflow"


def default_mlflow_tracking_uri(root: Path | None = None) -> str:
    """MLflow tracking and model registry: a SQLite store under the data dir unless
    SHOPSMART_MLFLOW_TRACKING_URI names another (an MLflow server's http(s):// URL)."""
    return f"sqlite:///{mlflow_dir(root) / 'mlflow.db'}"


def mlflow_tracking_uri() -> str:
    return _env(MLFLOW_TRACKING_URI_VAR) or default_mlflow_tracking_uri()


def mlflow_artifact_location(root: Path | None = None) -> str | None:
    """Where a local tracking store keeps run artifacts (models); an MLflow server decides
    for itself. For a data directory of one's own (`root`), its local store's."""
    uri = default_mlflow_tracking_uri(root) if root is not None else mlflow_tracking_uri()
    if uri.startswith(("http://", "https://", "databricks")):
        return None
    return (mlflow_dir(root) / "artifacts").as_uri()


def mlflow_ui_url() -> str:
    """SHOPSMART_MLFLOW_UI_URL: the MLflow UI that metadata links point at (`make mlflow-ui`
    serves the local store there), default the tracking server's URL or http://127.0.0.1:5000."""
    explicit = _env("SHOPSMART_MLFLOW_UI_URL")
    if explicit:
        return explicit.rstrip("/")
    uri = urlsplit(mlflow_tracking_uri())
    if uri.scheme not in {"http", "https"}:
        return "http://127.0.0.1:5000"
    # never the credentials a tracking URI may carry: links are shown in the UI
    host = uri.hostname or ""
    netloc = host if uri.port is None else f"{host}:{uri.port}"
    return urlunsplit((uri.scheme, netloc, uri.path, "", "")).rstrip("/")


def masked(url: str) -> str:
    """The URL with its password, if it has one, replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:" if parts.username else ":"
    return urlunsplit(parts._replace(netloc=f"{user}***@{netloc}"))


_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@")


def mask_urls(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***."""
    return _URL_PASSWORD.sub(r"\1***@", text)


def is_set(var: str) -> bool:
    return _env(var) is not None


def url_value(var: str, default: str) -> str:
    """The value of a URL setting (which may hold a password), for the commands that connect
    outside Dagster (the demo generator writing the sources). The definitions never read it:
    their resources get `dagster.EnvVar(var)`."""
    return _env(var) or default


def dagster_home() -> Path:
    """DAGSTER_HOME: Dagster's instance directory (run history, event log), default
    ./.dagster_home (the Makefile's)."""
    return Path(_env("DAGSTER_HOME") or ".dagster_home").expanduser().resolve()


def search_path() -> str:
    """PATH, where commands are looked up."""
    return os.environ.get("PATH", "")


def child_environment(**changes: str) -> dict[str, str]:
    """The environment for a process the platform starts (`dagster dev`, MLflow's servers):
    this one's, with `changes`."""
    return {**os.environ, **changes}


@contextmanager
def changed_environment(changes: Mapping[str, str]) -> Iterator[None]:
    """This process's environment with `changes` for the block (a command that is itself one
    of the processes it configures, such as `make cluster` reading the instance)."""
    saved = {key: os.environ.get(key) for key in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


PARTITIONS_FILE = "partitions.json"


def partitions_file() -> Path:
    """Where a data directory records the partitions its history was built on."""
    return data_dir() / PARTITIONS_FILE


def recorded_partitions() -> dict[str, str]:
    """The first day and time zone recorded with the data (`shopsmart-demo` writes them when
    it creates the sources), or nothing."""
    try:
        recorded = json.loads(partitions_file().read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise ValueError(f"{partitions_file()} is not readable JSON: {error}") from error
    return {k: str(v) for k, v in recorded.items() if k in {"start_date", "timezone"} and v}


def record_partitions(start: str, zone: str) -> bool:
    """Record the partitions' first day and time zone with the data, once: a later start
    would move partitions under existing history. Returns whether it was written now."""
    path = partitions_file()
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"start_date": start, "timezone": zone}, indent=2) + "\n")
    return True


def timezone() -> str:
    """SHOPSMART_TIMEZONE: the company time zone that partition boundaries follow; default the
    one recorded with the data ($SHOPSMART_DATA_DIR/partitions.json), else UTC."""
    return _env("SHOPSMART_TIMEZONE") or recorded_partitions().get("timezone") or DEFAULT_TIMEZONE


def start_date() -> str:
    """SHOPSMART_START_DATE: the first daily partition (YYYY-MM-DD); default the one recorded
    with the data ($SHOPSMART_DATA_DIR/partitions.json, written by the demo), else 2026-01-01.
    Production sets it once, to the first day of history, and never moves it."""
    return (
        _env("SHOPSMART_START_DATE")
        or recorded_partitions().get("start_date")
        or DEFAULT_START_DATE
    )


SPARK_MASTER_VAR = "SHOPSMART_SPARK_MASTER"
SPARK_REMOTE_VAR = "SHOPSMART_SPARK_REMOTE"


def spark_master() -> str | None:
    """SHOPSMART_SPARK_MASTER: e.g. spark://host:7077, yarn, k8s://…; default local[*]."""
    return _env(SPARK_MASTER_VAR)


def spark_remote() -> str | None:
    """SHOPSMART_SPARK_REMOTE: a Spark Connect URL, e.g. sc://127.0.0.1:15002."""
    return _env(SPARK_REMOTE_VAR)


def spark_conf_dir() -> Path | None:
    """SPARK_CONF_DIR (Spark's own variable): the directory of spark-defaults.conf and
    log4j2.properties that spark-submit puts on the driver's class path, when one is set."""
    raw = _env("SPARK_CONF_DIR")
    return Path(raw).expanduser() if raw else None


def spark_driver_memory() -> str:
    """SHOPSMART_SPARK_DRIVER_MEMORY: the local-mode driver's heap (which is also where the
    tasks run), as Spark writes sizes: default 2g; a day of 10M orders wants more
    (docs/performance.md)."""
    raw = _env("SHOPSMART_SPARK_DRIVER_MEMORY") or "2g"
    if not raw[:-1].isdigit() or raw[-1].lower() not in "mg":
        raise ValueError(f"SHOPSMART_SPARK_DRIVER_MEMORY must be like 2g or 1536m, got {raw!r}")
    return raw


def spark_connect_java_options() -> str:
    """SPARK_CONNECT_JAVA_OPTIONS: the Spark Connect server JVM's options, default the
    throughput collector (an empty value: the JVM's defaults)."""
    raw = os.environ.get("SPARK_CONNECT_JAVA_OPTIONS")
    return "-XX:+UseParallelGC" if raw is None else raw


def spark_shuffle_partitions() -> int:
    """SHOPSMART_SPARK_SHUFFLE_PARTITIONS: partitions of a Spark shuffle before adaptive
    execution coalesces them (spark.sql.shuffle.partitions), default 8."""
    raw = _env("SHOPSMART_SPARK_SHUFFLE_PARTITIONS") or "8"
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"SHOPSMART_SPARK_SHUFFLE_PARTITIONS must be a whole number, got {raw!r}")
    return int(raw)


def business_hours() -> tuple[int, int]:
    """SHOPSMART_BUSINESS_HOURS: trading hours as START-END in local time, default 09-18
    (orders of 09:00 … 17:59 are extracted hourly, each at the end of its hour)."""
    raw = _env("SHOPSMART_BUSINESS_HOURS") or "09-18"
    try:
        start, end = (int(part) for part in raw.split("-"))
    except ValueError as error:
        raise ValueError(f"SHOPSMART_BUSINESS_HOURS must look like 09-18, got {raw!r}") from error
    if not 0 <= start < end <= 24:
        raise ValueError(f"SHOPSMART_BUSINESS_HOURS must be within 00-24, got {raw!r}")
    return start, end


def business_days() -> str:
    """SHOPSMART_BUSINESS_DAYS: cron day-of-week field for trading days, default 1-5 (Mon–Fri)."""
    return _env("SHOPSMART_BUSINESS_DAYS") or "1-5"


SLACK_TOKEN_VAR = "SLACK_BOT_TOKEN"
SLACK_API_URL_VAR = "SHOPSMART_SLACK_API_URL"


def slack_channel() -> str:
    """SHOPSMART_SLACK_CHANNEL: where alerts go, default #shopsmart-data-alerts."""
    return _env("SHOPSMART_SLACK_CHANNEL") or "#shopsmart-data-alerts"


def slack_api_url() -> str:
    """SHOPSMART_SLACK_API_URL: Slack's Web API base URL (a local server in tests)."""
    return _env(SLACK_API_URL_VAR) or "https://slack.com/api/"


CELERY_BROKER_URL_VAR = "SHOPSMART_CELERY_BROKER_URL"
CELERY_BACKEND_URL_VAR = "SHOPSMART_CELERY_BACKEND_URL"


def celery_on() -> bool:
    """SHOPSMART_CELERY_BROKER_URL set (redis://host:port/0): steps run on Celery worker
    pools (`make cluster`); unset (default): in processes of the run's own machine."""
    return is_set(CELERY_BROKER_URL_VAR)


def celery_backend_var() -> str:
    """The variable holding Celery's result backend URL: SHOPSMART_CELERY_BACKEND_URL when set,
    else the broker's (Redis is both)."""
    return CELERY_BACKEND_URL_VAR if is_set(CELERY_BACKEND_URL_VAR) else CELERY_BROKER_URL_VAR


def ui_url() -> str:
    """SHOPSMART_UI_URL: the Dagster UI's address, for links in alerts."""
    return (_env("SHOPSMART_UI_URL") or "http://127.0.0.1:3000").rstrip("/")


def freshness_deadline() -> str:
    """SHOPSMART_FRESHNESS_DEADLINE: HH:MM local time by which yesterday must be in."""
    return _env("SHOPSMART_FRESHNESS_DEADLINE") or "06:00"


def automation_on() -> bool:
    """SHOPSMART_AUTOMATION=on: schedules and the daily-chain sensor start running as soon as
    the code location loads (production). Default off: turn them on in the UI (Automation)."""
    return (_env("SHOPSMART_AUTOMATION") or "off").lower() in {"on", "true", "1", "yes"}


def sensor_interval(default: int) -> int:
    """A sensor's minimum interval: `default` seconds, unless SHOPSMART_SENSOR_INTERVAL_SECONDS
    sets one for every sensor (tests and demos that cannot wait minutes for a tick)."""
    raw = _env("SHOPSMART_SENSOR_INTERVAL_SECONDS")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(
            f"SHOPSMART_SENSOR_INTERVAL_SECONDS must be whole seconds ≥ 1, got {raw!r}"
        )
    return int(raw)


def source_retry_delay() -> float:
    """SHOPSMART_SOURCE_RETRY_DELAY: seconds before the first retry of a step that reads a
    source (then ×3 and ×7, each ± the same), default 2."""
    raw = _env("SHOPSMART_SOURCE_RETRY_DELAY") or "2"
    try:
        delay = float(raw)
    except ValueError as error:
        raise ValueError(f"SHOPSMART_SOURCE_RETRY_DELAY must be seconds, got {raw!r}") from error
    if delay < 0:
        raise ValueError(f"SHOPSMART_SOURCE_RETRY_DELAY must not be negative, got {raw!r}")
    return delay


def recovery_days() -> int:
    """SHOPSMART_RECOVERY_DAYS: how many past days the recovery and late-data sensors watch."""
    raw = _env("SHOPSMART_RECOVERY_DAYS") or "7"
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"SHOPSMART_RECOVERY_DAYS must be a whole number of days, got {raw!r}")
    return int(raw)


def lake_retention_days() -> int:
    """SHOPSMART_LAKE_RETENTION_DAYS: how long a replaced partition version is kept in the
    lake's version store before `shopsmart-lake gc` may delete it (never while a registered
    model version learned from it), default 30."""
    raw = _env("SHOPSMART_LAKE_RETENTION_DAYS") or "30"
    if not raw.isdigit():
        raise ValueError(f"SHOPSMART_LAKE_RETENTION_DAYS must be whole days, got {raw!r}")
    return int(raw)


def docs_url() -> str | None:
    """SHOPSMART_DOCS_URL: where the project's docs/ directory is served, e.g.
    https://github.com/acme/shopsmart/blob/main/docs; each asset's `docs` metadata then links
    to `<url>/lake.md#<section>`. Default none: the repository has no public address, and a
    file:// link is no answer (browsers do not open file:// links from the UI's http:// page),
    so the UI shows the path in the repository instead (`docs/lake.md#<section>`, with a copy
    button), correct wherever the project is checked out."""
    return (_env("SHOPSMART_DOCS_URL") or "").rstrip("/") or None
