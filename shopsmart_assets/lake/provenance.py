"""What each partition was built from, as its commit recorded it.

Every commit of the lake layer records the run, the partitions written and what the step had
read: each upstream table's version and the fingerprint (its files) of each upstream
partition (resource.py). Raw partitions record their source and its row count (a commit of
several raw partitions: the rows of each, by partition). From that:

- `partition_commits`: each partition's current files and the commit that wrote them;
- `stale_partitions`: the partitions whose recorded inputs are no longer what the upstream
  tables hold (an input rebuilt since, or one that was missing then and is there now), which
  the late-data and recovery automation rebuild, whenever that happened;
- `lineage`: the tree of a partition's inputs, down to the raw hours and their sources.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from shopsmart_assets.lake.delta import DeltaLakeTable, commit_info, fingerprint


@dataclass(frozen=True)
class PartitionCommit:
    """The commit that wrote a partition's current files, and what it recorded."""

    table: str
    partition: str
    version: int
    run_id: str | None
    # upstream table → {partition → fingerprint of its files when read}
    inputs: dict[str, dict[str, str]] = field(default_factory=dict)
    # upstream table → the version of it the step read
    input_versions: dict[str, int] = field(default_factory=dict)
    # what else the commit recorded (a raw partition: its source and source rows)
    info: dict = field(default_factory=dict)


def partition_commits(
    table: DeltaLakeTable, version: int | None = None, limit: int | None = None
) -> dict[str, PartitionCommit]:
    """Partition key → the newest commit (at or before `version`; among the newest `limit`)
    that wrote it."""
    found: dict[str, PartitionCommit] = {}
    for entry in table.history(limit):
        number = int(entry["version"])
        if version is not None and number > version:
            continue
        for partition in commit_info(entry).get("partitions", []):
            found.setdefault(partition, _partition_commit(table.name, partition, entry))
    return found


def _partition_commit(table: str, partition: str, entry: Mapping) -> PartitionCommit:
    info = commit_info(entry)
    reads = info.get("inputs", {})
    return PartitionCommit(
        table,
        partition,
        int(entry["version"]),
        info.get("run_id"),
        {upstream: dict(read.get("partitions", {})) for upstream, read in reads.items()},
        {upstream: int(read["version"]) for upstream, read in reads.items() if "version" in read},
        {
            k: _of_partition(v, partition)
            for k, v in info.items()
            if k not in ("inputs", "partitions", "commit_id")
        },
    )


def _of_partition(value: object, partition: str) -> object:
    """A commit of several partitions records what differs between them (a raw partition's
    source rows) as a map by partition: the value of `partition`."""
    if isinstance(value, Mapping) and partition in value:
        return value[partition]
    return value


def current_fingerprints(
    files: Mapping[str, Sequence[str]], subpath_of: Callable[[str], str], keys: Sequence[str]
) -> dict[str, str]:
    """Partition key → the fingerprint of its files in a table version's `files` (partition
    subpath → its files; the partitions the version does not hold are left out)."""
    subpaths = {key: subpath_of(key) for key in keys}
    return {key: fingerprint(files[s]) for key, s in subpaths.items() if s in files}


@dataclass(frozen=True)
class Stale:
    """A partition built from inputs that are no longer current, and which."""

    table: str
    partition: str
    changed: list[str]  # "<table> <partition>": rebuilt since, or missing then and there now


def stale_partitions(
    commits: Mapping[str, PartitionCommit],
    needed: Callable[[str], Mapping[str, Sequence[str]]],
    now: Callable[[str, Sequence[str]], Mapping[str, str]],
) -> Iterator[Stale]:
    """The partitions (of `commits`) whose recorded inputs differ from what the upstream
    tables hold now. `needed(partition)`: upstream table → the partitions it reads (the
    declared partition mappings); `now(table, partitions)`: their current fingerprints."""
    for partition, commit in sorted(commits.items()):
        changed = []
        for upstream, keys in needed(partition).items():
            recorded = commit.inputs.get(upstream, {})
            current = now(upstream, keys)
            changed += [
                f"{upstream} {key}"
                for key in keys
                if key in current and recorded.get(key) != current[key]
            ]
        if changed:
            yield Stale(commit.table, partition, changed)


@dataclass
class LineageNode:
    """A partition as a version of its table holds it: the commit that wrote it, and the
    partitions it was built from (empty for a raw partition: its source is in `info`)."""

    table: str
    partition: str
    commit: PartitionCommit | None
    inputs: list[LineageNode] = field(default_factory=list)
    shown_before: bool = False


@dataclass
class Lineage:
    """Walks partitions' provenance through the lake's tables (each table's log read once).
    `upstream(table, partition)`: upstream table → the partitions it reads (the declared
    partition mappings)."""

    tables: Mapping[str, DeltaLakeTable]
    upstream: Callable[[str, str], Mapping[str, Sequence[str]]]
    _logs: dict[str, list[Mapping]] = field(default_factory=dict)
    _seen: set[tuple[str, str, int]] = field(default_factory=set)

    def of(self, table: str, partition: str, version: int | None = None) -> LineageNode:
        """The lineage of `partition` of `table` as its version `version` (default: the
        current one) holds it."""
        commit = self._commit(table, partition, version)
        node = LineageNode(table, partition, commit)
        if commit is None:
            return node
        mark = (table, partition, commit.version)
        if mark in self._seen:
            node.shown_before = True
            return node
        self._seen.add(mark)
        for upstream, keys in self.upstream(table, partition).items():
            read_version = commit.input_versions.get(upstream)
            for key in keys:
                if key in commit.inputs.get(upstream, {}):
                    node.inputs.append(self.of(upstream, key, read_version))
        return node

    def _commit(self, table: str, partition: str, version: int | None) -> PartitionCommit | None:
        if table not in self._logs:
            self._logs[table] = self.tables[table].history() if table in self.tables else []
        for entry in self._logs[table]:
            if version is not None and int(entry["version"]) > version:
                continue
            if partition in commit_info(entry).get("partitions", []):
                return _partition_commit(table, partition, entry)
        return None


def lineage_lines(node: LineageNode, depth: int = 0) -> Iterator[str]:
    """The tree as text, a partition a line: table, partition, version, run, and for raw
    partitions their source and its rows."""
    commit = node.commit
    if commit is None:
        what = "not in the lake"
    else:
        what = f"v{commit.version}, run {(commit.run_id or '-')[:8]}"
        if "source" in commit.info:
            what += f", {commit.info['source']}: {commit.info.get('source_rows', '?')} rows"
        if node.shown_before:
            what += " (its inputs above)"
    yield f"{'  ' * depth}{node.table} {node.partition}  ({what})"
    for child in node.inputs:
        yield from lineage_lines(child, depth + 1)
