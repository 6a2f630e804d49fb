"""The test harness: a data directory with generated sources, the code location's resources
for it and a Dagster instance (`Platform`), and helpers that run the chain as users do (in
process over partition ranges, the `dagster` command line) and read what it did."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property
from pathlib import Path
from typing import TypeVar

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from shopsmart_assets.cli.demo import local_midnight
from shopsmart_assets.definitions import build_assets
from shopsmart_assets.defs.asset_graph import DeclaredAssetGraph
from shopsmart_assets.defs.automation.jobs import range_tags
from shopsmart_assets.defs.ml.records import ChampionRecord, ModelRecord
from shopsmart_assets.demo.generator import DemoConfig, create_sources, generate
from shopsmart_assets.partitions import Partitions, build_partitions
from shopsmart_assets.resources import (
    FeatureStoreResource,
    LakeResource,
    ModelRegistry,
    SourceDatabase,
    build_resources,
)
from shopsmart_assets.resources.spark import spark_config

T = TypeVar("T")

START = date(2026, 1, 1)
UTC_PARTITIONS = build_partitions(str(START), "UTC")
CHAIN_GRAPH = DeclaredAssetGraph.of(build_assets(UTC_PARTITIONS))
# The chain as the definitions declare it: the hourly extracts, then the daily assets.
HOURLY = [k.to_user_string() for k in CHAIN_GRAPH.partitioned_by(UTC_PARTITIONS.hourly)]
DAILY = [k.to_user_string() for k in CHAIN_GRAPH.partitioned_by(UTC_PARTITIONS.daily)]


@dataclass
class Platform:
    """A data dir with generated sources, its resources and a Dagster instance, for the
    partitions of one time zone and start date."""

    root: Path
    crm_url: str
    orders_url: str
    instance: dg.DagsterInstance
    partitions: Partitions = UTC_PARTITIONS

    @cached_property
    def assets(self) -> list[dg.AssetsDefinition]:
        return build_assets(self.partitions)

    @cached_property
    def graph(self) -> DeclaredAssetGraph:
        return DeclaredAssetGraph.of(self.assets)

    def resources(self, **overrides: object) -> dict[str, object]:
        """The code location's resources for this data dir (`build_resources`): its lake,
        Feast and MLflow stores, its two SQLite sources, and a small local Spark (the test
        run's session); `overrides` by resource key."""
        from dagster_pyspark import LazyPySparkResource

        sources = {
            "crm_db": SourceDatabase(name="crm", url=self.crm_url),
            "orders_db": SourceDatabase(name="orders", url=self.orders_url),
            "pyspark": LazyPySparkResource(spark_config=spark_config("local[2]")),
        }
        return build_resources(self.assets, data_dir=self.root, **{**sources, **overrides})

    @property
    def lake(self) -> LakeResource:
        return self.resources()["lake"]

    @property
    def feature_store(self) -> FeatureStoreResource:
        """Feast with its SQLite online store and file registry in this data dir."""
        return self.resources()["feature_store"]

    @property
    def model_registry(self) -> ModelRegistry:
        """MLflow tracking and registry in a SQLite store in this data dir."""
        return self.resources()["model_registry"]

    def path(self, asset: str, partition_key: str) -> Path:
        """Where a partition of an asset lies in the lake (the platform's own layer; the
        directory also holds older versions' files: `files` lists the current ones)."""
        key = dg.AssetKey.from_user_string(asset)
        return self.lake.partition_path(key, self.graph.partitions_def(key), partition_key)

    def files(self, asset: str, partition_key: str) -> list[Path]:
        """A partition's files in its table's current version ([] when it holds none)."""
        key = dg.AssetKey.from_user_string(asset)
        partitions_def = self.graph.partitions_def(key)
        held = self.lake.partition_files(key, partitions_def, [partition_key])
        return held.get(partition_key, [])

    def frame(self, asset: str, partition_key: str) -> pd.DataFrame:
        """A partition's rows in its table's current version."""
        files = self.files(asset, partition_key)
        assert files, f"{asset} {partition_key} is not in the lake"
        return pd.read_parquet([str(f) for f in files])

    def champion(self, partition_key: str) -> ChampionRecord:
        return ChampionRecord.read(self.files("ml/champion_model", partition_key))

    def model_record(self, partition_key: str) -> ModelRecord:
        return ModelRecord.read(self.files("ml/purchase_model", partition_key))

    def generate(self, first_day: date, days: int, orders_per_day: int, seed: int = 11) -> None:
        """Whole local days of demo data from `first_day` (23, 24 or 25 hours each)."""
        crm, orders = sa.create_engine(self.crm_url), sa.create_engine(self.orders_url)
        create_sources(crm, orders)
        zone = self.partitions.timezone
        first = local_midnight(first_day, zone)
        # whole local days; a day of a half-hour shift ends half-way through a UTC hour
        hours = math.ceil((local_midnight(first_day, zone, days) - first).total_seconds() / 3600)
        config = DemoConfig(seed=seed, orders_per_day=orders_per_day, timezone=zone)
        generate(crm, orders, first, hours, config)

    def materialize(
        self,
        selection: Sequence[str],
        first: str,
        last: str | None = None,
        raise_on_error: bool = True,
        **resource_overrides: object,
    ) -> dg.ExecuteInProcessResult:
        """Materialize `selection` for partitions first..last in one run (single-run range)."""
        return dg.materialize(
            self.assets,
            selection=list(selection),
            instance=self.instance,
            resources=self.resources(**resource_overrides),
            tags=range_tags(first, last or first),
            raise_on_error=raise_on_error,
        )

    def hours(self, first: date, last: date | None = None) -> tuple[str, str]:
        """The first and last hourly partition keys of the days first..last."""
        return (
            self.partitions.hours_of_day(str(first))[0],
            self.partitions.hours_of_day(str(last or first))[-1],
        )

    def run_backfill(self, partitions: dict[str, list[str]]) -> int:
        """Execute a backfill's partitions as the backfill daemon plans them: assets in
        dependency order, each contiguous range of partitions one run, consecutive assets with
        the same partitions together; returns the number of runs."""
        runs, group, group_keys = 0, [], None
        for key in [k.to_user_string() for k in self.graph.keys]:
            keys = partitions.get(key)
            if not keys:
                continue
            if group and keys != group_keys:
                runs += self._run_ranges(group, group_keys)
                group = []
            group.append(key)
            group_keys = keys
        if group:
            runs += self._run_ranges(group, group_keys)
        return runs

    def _run_ranges(self, assets: list[str], keys: list[str]) -> int:
        partitions_def = self.graph.partitions_def(dg.AssetKey.from_user_string(assets[0]))
        subset = partitions_def.subset_with_partition_keys(keys)
        ranges = subset.get_partition_key_ranges(partitions_def)
        for key_range in ranges:
            self.materialize(assets, key_range.start, key_range.end)
        return len(ranges)

    def materialize_days(self, first: date, last: date, raise_on_error: bool = True):
        """The whole chain for a range of days: hourly orders first, then the daily chain."""
        self.materialize(HOURLY, *self.hours(first, last))
        return self.materialize(DAILY, str(first), str(last), raise_on_error=raise_on_error)


def repository_of(defs: dg.Definitions) -> dg.RepositoryDefinition:
    """The definitions' repository, resolved under a live test instance: resolving reads the
    current instance's state storage, which a test that ended before may have left behind
    disposed (fixtures are not always torn down in the order they were set up)."""
    with dg.instance_for_test():
        return defs.get_repository_def()


def run_failure_context(instance: dg.DagsterInstance, run_id: str) -> dg.RunFailureSensorContext:
    """What the run-failure sensor (the Slack alert) is given for a failed run."""
    run = instance.get_run_by_id(run_id)
    [failure] = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    return dg.build_run_status_sensor_context(
        sensor_name="slack_on_run_failure",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=failure.dagster_event,
    ).for_run_failure()


def draw_examples(count: int, example: Callable[..., T], **strategies) -> list[T]:
    """Up to `count` examples of the hypothesis `strategies`, drawn before any is checked, each
    built by `example` (which may `assume`): for tests that check many examples in one Spark
    job instead of one job per example."""
    from hypothesis import given, settings

    examples: list[T] = []

    @settings(max_examples=count, deadline=None, database=None)
    @given(**strategies)
    def draw(**values) -> None:
        examples.append(example(**values))

    draw()
    return examples


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=k) for k in range((last - first).days + 1)]


def platform_at(
    root: Path, instance: dg.DagsterInstance, partitions: Partitions = UTC_PARTITIONS
) -> Platform:
    return Platform(
        root=root,
        crm_url=f"sqlite:///{root / 'crm.db'}",
        orders_url=f"sqlite:///{root / 'orders.db'}",
        instance=instance,
        partitions=partitions,
    )


def generate_sources(directory: Path, days: int, orders_per_day: int, start: date = START) -> None:
    """crm.db and orders.db in `directory`, written by the `shopsmart-demo` command."""
    from shopsmart_assets.cli.demo import main as demo_main

    assert (
        demo_main(
            [
                "--crm-url",
                f"sqlite:///{directory}/crm.db",
                "--orders-url",
                f"sqlite:///{directory}/orders.db",
                "--start-date",
                str(start),
                "--days",
                str(days),
                "--orders-per-day",
                str(orders_per_day),
            ]
        )
        == 0
    )


def materialize_cli(
    env: dict[str, str], cwd: Path, *args: str, timeout: float = 900
) -> subprocess.CompletedProcess:
    """`dagster asset materialize -m shopsmart_assets.definitions ARGS`, as users run it, in
    `env` (a whole environment); fails the test with the command's output unless it succeeds."""
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run(
        [str(dagster), "asset", "materialize", "-m", "shopsmart_assets.definitions", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def files_containing(root: Path, needle: str) -> list[Path]:
    """Every file under `root` whose bytes contain `needle` (secrets must be in none)."""
    return [f for f in root.rglob("*") if f.is_file() and needle.encode() in f.read_bytes()]


def in_memory_instance() -> dg.DagsterInstance:
    """A Dagster instance whose runs and events live in memory, for the chains a test runs in
    process and inspects through the instance's API: a SQLite instance opens its database and
    commits for every event (docs/performance.md). What a
    SQLite or PostgreSQL instance records is tested where Dagster runs as users run it
    (`dagster` commands, `dagster dev`). Use it as a context manager."""
    return dg.DagsterInstance.ephemeral()


def requested_partitions(request: dg.RunRequest) -> dict[dg.AssetKey, list[str]]:
    """What a sensor's backfill request asks for, by asset (empty for a plain run request)."""
    subset = request.asset_graph_subset
    if subset is None:
        return {}
    return {
        key: list(subset.partitions_subsets_by_asset_key[key].get_partition_keys())
        for key in subset.asset_keys
    }
