"""Queries over the asset graph the definitions declare, for everything that needs a list of
assets or the partitions a change reaches.

Backfills, recovery, late data, the summary and the schedules never name assets by hand: they
ask this module, which reads the public `AssetSpec`s (keys, dependencies and their partition
mappings, partitions, metadata) of the assets they are given. A new asset joins every one of
them by being defined.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from graphlib import TopologicalSorter

import dagster as dg

from shopsmart_assets.lake.upstream import declared_mapping, upstream_partition_keys
from shopsmart_assets.partitions import AssetPartitions

# Definition metadata of assets whose older partitions are history, not serving state: when an
# upstream day changes late, only their latest partition is rebuilt (the online store, the
# model in service). Everything else is rebuilt for every partition whose inputs changed.
REBUILD_ON_LATE_DATA = "shopsmart/rebuild_on_late_data"
LATEST_ONLY = {REBUILD_ON_LATE_DATA: "latest partition only"}


@dataclass(frozen=True)
class DeclaredAssetGraph:
    """The assets' specs by key, with what depends on what (the public `AssetSpec`s, not
    Dagster's private asset graph)."""

    specs: Mapping[dg.AssetKey, dg.AssetSpec]
    # the resources each asset's step requires (which source databases it reads, say)
    resources: Mapping[dg.AssetKey, frozenset[str]]

    @classmethod
    def of(cls, assets: Iterable[dg.AssetsDefinition]) -> DeclaredAssetGraph:
        assets = list(assets)
        return cls(
            specs={spec.key: spec for a in assets for spec in a.specs},
            resources={key: frozenset(a.required_resource_keys) for a in assets for key in a.keys},
        )

    def requiring(self, resource_key: str) -> list[dg.AssetKey]:
        """The assets whose steps use a resource (e.g. the extracts of one source)."""
        return [k for k in self.keys if resource_key in self.resources.get(k, ())]

    @property
    def keys(self) -> list[dg.AssetKey]:
        """Every asset, each after the assets it depends on."""
        graph = {
            key: {d.asset_key for d in spec.deps if d.asset_key in self.specs}
            for key, spec in self.specs.items()
        }
        return list(TopologicalSorter(graph).static_order())

    def partitioned_by(self, partitions_def: dg.PartitionsDefinition) -> list[dg.AssetKey]:
        return [k for k in self.keys if self.specs[k].partitions_def == partitions_def]

    def partitions_def(self, key: dg.AssetKey) -> dg.PartitionsDefinition:
        partitions_def = self.specs[key].partitions_def
        if partitions_def is None:
            raise ValueError(f"{key.to_user_string()} is not partitioned")
        return partitions_def

    def mapping(self, key: dg.AssetKey, upstream: dg.AssetKey) -> dg.PartitionMapping:
        return declared_mapping(self.specs[key], upstream)

    def upstream_partitions(
        self, key: dg.AssetKey, upstream: dg.AssetKey, partition_keys: Sequence[str]
    ) -> list[str]:
        """The partitions of `upstream` that these partitions of `key` read."""
        return upstream_partition_keys(
            self.mapping(key, upstream),
            self.partitions_def(key),
            self.partitions_def(upstream),
            partition_keys,
        )

    def downstream_partitions(
        self,
        changed: Mapping[dg.AssetKey, Sequence[str]],
        now: datetime,
        ran: Callable[[dg.AssetKey, list[str]], Iterable[str]] | None = None,
    ) -> AssetPartitions:
        """Every partition whose inputs include a changed one, through the whole graph, as the
        partition mappings say, with the changed partitions themselves. Partitions that do not
        exist at `now` are left out, and so are those `ran` does not return (the ones that
        were never built: the normal chain will build them from the new data); assets marked
        LATEST_ONLY keep only their newest remaining partition."""
        reached: dict[dg.AssetKey, set[str]] = {k: set(v) for k, v in changed.items() if v}
        for key in self.keys:
            own = self.specs[key].partitions_def
            for dep in self.specs[key].deps:
                upstream = dep.asset_key
                if upstream not in reached or upstream not in self.specs or own is None:
                    continue
                theirs = self.partitions_def(upstream)
                subset = self.mapping(key, upstream).get_downstream_partitions_for_partitions(
                    theirs.subset_with_partition_keys(sorted(reached[upstream])),
                    theirs,
                    own,
                    current_time=now,
                )
                found = set(subset.get_partition_keys())
                if found:
                    reached.setdefault(key, set()).update(found)
        result: AssetPartitions = {}
        for key, keys in reached.items():
            ordered = self._order(key, keys)
            if ran is not None and key not in changed:
                present = set(ran(key, ordered))
                ordered = [k for k in ordered if k in present]
            if REBUILD_ON_LATE_DATA in (self.specs[key].metadata or {}):
                ordered = ordered[-1:]
            if ordered:
                result[key] = ordered
        return result

    def with_upstream(
        self,
        partitions: Mapping[dg.AssetKey, Sequence[str]],
        present: Callable[[dg.AssetKey], Collection[str]],
    ) -> AssetPartitions:
        """These partitions and every upstream partition they need that is not `present`,
        through the whole graph, as the partition mappings say: as far back as the windows
        reach (90 days of purchases for a day's features, 28 training sets for a model), up
        to the partitions' start. What a backfill of `partitions` must also build to succeed."""
        wanted = {k: set(v) for k, v in partitions.items() if v}
        for key in reversed(self.keys):  # every asset after all that depend on it
            if key not in wanted:
                continue
            for dep in self.specs[key].deps:
                upstream = dep.asset_key
                if upstream not in self.specs:
                    continue
                needed = self.upstream_partitions(key, upstream, sorted(wanted[key]))
                missing = set(needed) - set(present(upstream))
                if missing:
                    wanted.setdefault(upstream, set()).update(missing)
        return {key: self._order(key, keys) for key, keys in wanted.items()}

    def _order(self, key: dg.AssetKey, keys: Iterable[str]) -> list[str]:
        partitions_def = self.partitions_def(key)
        return list(partitions_def.subset_with_partition_keys(list(keys)).get_partition_keys())
