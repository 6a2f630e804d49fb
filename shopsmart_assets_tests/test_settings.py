"""Settings: Spark mode and source URLs follow the environment; secrets stay in EnvVar."""

from __future__ import annotations

import dagster as dg
import pytest

from shopsmart_assets import settings
from shopsmart_assets.partitions import build_partitions
from shopsmart_assets.resources import build_resources
from shopsmart_assets.resources.spark import spark_config, spark_resource


def test_spark_runs_local_by_default(monkeypatch):
    monkeypatch.delenv("SHOPSMART_SPARK_MASTER", raising=False)
    monkeypatch.delenv("SHOPSMART_SPARK_REMOTE", raising=False)
    config = spark_resource().spark_config
    assert config["spark.master"] == "local[*]"
    assert "spark.remote" not in config


def test_spark_master_and_connect_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("SHOPSMART_SPARK_MASTER", "spark://10.0.0.5:7077")
    assert spark_resource().spark_config["spark.master"] == "spark://10.0.0.5:7077"
    monkeypatch.setenv("SHOPSMART_SPARK_REMOTE", "sc://127.0.0.1:15002")
    config = spark_resource().spark_config
    assert config["spark.remote"] == "sc://127.0.0.1:15002"
    assert "spark.master" not in config  # Connect decides where the work runs
    assert config["spark.sql.session.timeZone"] == "UTC"


def test_spark_memory_and_shuffle_partitions_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("SHOPSMART_SPARK_REMOTE", raising=False)
    monkeypatch.delenv("SHOPSMART_SPARK_MASTER", raising=False)
    config = spark_resource().spark_config
    assert (config["spark.driver.memory"], config["spark.sql.shuffle.partitions"]) == ("2g", "8")
    monkeypatch.setenv("SHOPSMART_SPARK_DRIVER_MEMORY", "8g")
    monkeypatch.setenv("SHOPSMART_SPARK_SHUFFLE_PARTITIONS", "64")
    config = spark_resource().spark_config
    assert (config["spark.driver.memory"], config["spark.sql.shuffle.partitions"]) == ("8g", "64")
    # a Connect session sets the SQL side only; the server's memory is the server's
    monkeypatch.setenv("SHOPSMART_SPARK_REMOTE", "sc://127.0.0.1:15002")
    config = spark_resource().spark_config
    assert config["spark.sql.shuffle.partitions"] == "64"
    assert "spark.driver.memory" not in config


@pytest.mark.parametrize(
    "variable, value",
    [
        ("SHOPSMART_SPARK_DRIVER_MEMORY", "lots"),
        ("SHOPSMART_SPARK_DRIVER_MEMORY", "8"),
        ("SHOPSMART_SPARK_SHUFFLE_PARTITIONS", "0"),
        ("SHOPSMART_SPARK_SHUFFLE_PARTITIONS", "-3"),
    ],
)
def test_absurd_spark_sizes_are_refused_with_the_variable_named(monkeypatch, variable, value):
    monkeypatch.delenv("SHOPSMART_SPARK_REMOTE", raising=False)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable):
        spark_resource()


def test_source_urls_from_the_environment_stay_secret(monkeypatch, tmp_path):
    secret = "postgresql://etl:s3cr3t@db.internal/crm"
    monkeypatch.setenv("SHOPSMART_CRM_URL", secret)
    monkeypatch.setenv("SHOPSMART_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SHOPSMART_ORDERS_URL", raising=False)
    resources = build_resources()
    assert isinstance(resources["crm_db"].url, dg.EnvVar)
    assert secret not in repr(resources["crm_db"])
    assert resources["orders_db"].url == f"sqlite:///{tmp_path / 'sources' / 'orders.db'}"
    assert resources["lake"].root == str(tmp_path / "lake")


@pytest.mark.parametrize("value", ["", "   "])
def test_blank_settings_mean_default(monkeypatch, tmp_path, value):
    # no partitions recorded with the data (shopsmart-demo records them in the data dir)
    monkeypatch.setenv("SHOPSMART_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SHOPSMART_TIMEZONE", value)
    monkeypatch.setenv("SHOPSMART_START_DATE", value)
    assert settings.timezone() == "UTC"
    assert settings.start_date() == "2026-01-01"
    assert spark_config()["spark.master"] == "local[*]"


def test_feast_and_mlflow_live_in_the_data_dir_unless_told_otherwise(monkeypatch, tmp_path):
    monkeypatch.setenv("SHOPSMART_DATA_DIR", str(tmp_path))
    for name in ("SHOPSMART_MLFLOW_TRACKING_URI", "SHOPSMART_MLFLOW_UI_URL"):
        monkeypatch.delenv(name, raising=False)
    assert settings.default_online_store_url() == f"sqlite:///{tmp_path}/feast/online_store.db"
    assert settings.default_feast_registry() == f"{tmp_path}/feast/registry.db"
    assert settings.mlflow_tracking_uri() == f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    assert settings.mlflow_artifact_location() == (tmp_path / "mlflow" / "artifacts").as_uri()
    assert settings.mlflow_ui_url() == "http://127.0.0.1:5000"
    # an MLflow server: it keeps the artifacts, and links never carry its credentials
    monkeypatch.setenv("SHOPSMART_MLFLOW_TRACKING_URI", "https://ml:pw-1@mlflow.internal:8443/")
    assert settings.mlflow_artifact_location() is None
    assert settings.mlflow_ui_url() == "https://mlflow.internal:8443"
    monkeypatch.setenv("SHOPSMART_MLFLOW_UI_URL", "https://mlflow.example.com/")
    assert settings.mlflow_ui_url() == "https://mlflow.example.com"


def test_partitions_recorded_with_the_data_hold_until_the_environment_says_otherwise(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("SHOPSMART_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SHOPSMART_START_DATE", raising=False)
    monkeypatch.delenv("SHOPSMART_TIMEZONE", raising=False)
    assert settings.start_date() == "2026-01-01"  # nothing recorded: the default
    assert settings.record_partitions("2026-11-12", "Asia/Kathmandu")
    assert not settings.record_partitions("2026-11-20", "UTC")  # recorded once, never moved
    assert (settings.start_date(), settings.timezone()) == ("2026-11-12", "Asia/Kathmandu")
    partitions = build_partitions()
    assert partitions.daily.get_first_partition_key() == "2026-11-12"
    assert partitions.timezone == "Asia/Kathmandu"
    monkeypatch.setenv("SHOPSMART_START_DATE", "2025-06-01")  # production says so explicitly
    monkeypatch.setenv("SHOPSMART_TIMEZONE", "UTC")
    assert (settings.start_date(), settings.timezone()) == ("2025-06-01", "UTC")
    settings.partitions_file().write_text("{not json")
    monkeypatch.delenv("SHOPSMART_START_DATE")
    with pytest.raises(ValueError, match="partitions.json"):
        settings.start_date()


def test_the_demo_plans_days_ending_yesterday_from_the_recorded_start(monkeypatch, tmp_path):
    from datetime import date, datetime, timezone

    from shopsmart_assets.cli.demo import plan_days, yesterday

    monkeypatch.setenv("SHOPSMART_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SHOPSMART_START_DATE", raising=False)
    # 23:30 UTC on the 25th is already the 26th in Kathmandu (+05:45)
    late = datetime(2026, 11, 25, 23, 30, tzinfo=timezone.utc)
    assert yesterday("Asia/Kathmandu", late) == date(2026, 11, 25)
    assert yesterday("UTC", late) == date(2026, 11, 24)
    assert plan_days("UTC", 14, date(2026, 11, 25), None) == (
        date(2026, 11, 12),
        date(2026, 11, 25),
    )
    settings.record_partitions("2026-11-12", "UTC")
    # a later demo keeps the recorded first day and adds the days since
    assert plan_days("UTC", 14, date(2026, 11, 30), None) == (
        date(2026, 11, 12),
        date(2026, 11, 30),
    )
    with pytest.raises(SystemExit, match="after the last day"):
        plan_days("UTC", 14, date(2026, 11, 1), None)


def test_one_setting_sets_every_sensors_interval(monkeypatch):
    from shopsmart_assets.definitions import build_definitions

    def intervals() -> dict[str, int | None]:
        sensors = build_definitions(build_partitions("2026-01-01", "UTC")).sensors or []
        return {s.name: s.minimum_interval_seconds for s in sensors}

    monkeypatch.delenv("SHOPSMART_SENSOR_INTERVAL_SECONDS", raising=False)
    default = intervals()
    assert default["slack_on_run_failure"] == 30 and default["recovery_sensor"] == 300
    monkeypatch.setenv("SHOPSMART_SENSOR_INTERVAL_SECONDS", "5")
    assert set(intervals().values()) == {5} and intervals().keys() == default.keys()
    monkeypatch.setenv("SHOPSMART_SENSOR_INTERVAL_SECONDS", "0")
    with pytest.raises(ValueError, match="SHOPSMART_SENSOR_INTERVAL_SECONDS"):
        intervals()


def test_a_local_driver_maps_the_class_archive_once_written(monkeypatch, tmp_path):
    """Local-mode drivers start with the throughput collector, and map Spark's classes from
    the archive `shopsmart-spark-archive` writes into the environment, once it is there; an
    archive written under other JVM options is another file."""
    import sys

    from shopsmart_assets.cli.spark_archive import main as spark_archive
    from shopsmart_assets.resources.spark import LOCAL_DRIVER_JAVA_OPTIONS
    from shopsmart_assets.resources.spark_archive import driver_archive

    monkeypatch.delenv("SHOPSMART_SPARK_REMOTE", raising=False)
    monkeypatch.delenv("SHOPSMART_SPARK_MASTER", raising=False)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    archive = driver_archive(LOCAL_DRIVER_JAVA_OPTIONS)
    assert archive.is_relative_to(tmp_path)
    assert driver_archive("-XX:+UseSerialGC") != archive
    options = spark_resource().spark_config["spark.driver.extraJavaOptions"]
    assert "-XX:+UseParallelGC" in options and "SharedArchiveFile" not in options
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"")
    monkeypatch.delenv("SPARK_CONF_DIR", raising=False)
    options = spark_resource().spark_config["spark.driver.extraJavaOptions"]
    assert f"-XX:SharedArchiveFile={archive} -Xshare:auto" in options
    # Spark's configuration directory goes on the driver's class path: no archive maps there
    conf = tmp_path / "spark-conf"
    conf.mkdir()
    monkeypatch.setenv("SPARK_CONF_DIR", str(conf))
    assert "SharedArchiveFile" in spark_resource().spark_config["spark.driver.extraJavaOptions"]
    (conf / "spark-defaults.conf").write_text("spark.ui.showConsoleProgress false\n")
    options = spark_resource().spark_config["spark.driver.extraJavaOptions"]
    assert "-XX:+UseParallelGC" in options and "SharedArchiveFile" not in options
    monkeypatch.delenv("SPARK_CONF_DIR")
    # Spark Connect starts no driver of its own
    monkeypatch.setenv("SHOPSMART_SPARK_REMOTE", "sc://127.0.0.1:15002")
    assert "spark.driver.extraJavaOptions" not in spark_resource().spark_config
    assert spark_archive(["--where"]) == 0


def test_value_counts_tally_a_column_of_a_partition(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from shopsmart_assets.lake.metadata import value_counts

    pq.write_table(pa.table({"reason": ["a", "b", None, "a"]}), tmp_path / "part-0.parquet")
    pq.write_table(pa.table({"reason": pa.array(["a"], pa.string())}), tmp_path / "part-1.parquet")
    assert value_counts(tmp_path, "reason") == {"a": 3, "b": 1}
