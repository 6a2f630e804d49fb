"""Partition versions: what each published partition is, and where replaced ones are kept.

Every publish gives the new partition a version id, a digest of its content (the SHA-256 of
its files' own digests and sizes, in order of digest: the random file names play no part), and
a manifest (version, files with sizes and digests, rows, when, which run). The version a
publish replaces is not deleted: it moves, whole, into the lake's version store. For a
partition at `<zone>/<table>/<path>` (`path`: `date=…`, or `date=…/hour=…`):

    <lake>/_versions/<zone>/<table>/<path>/<version>.json   the manifest of every version
    <lake>/_versions/<zone>/<table>/<path>/<version>/       a kept version's files
    <lake>/_versions/<zone>/<table>/<path>/CURRENT          which version the partition holds

A kept version is a plain Parquet read; a glob over a table never reaches the store, and the
partition directories hold their data files only, so any glob (`date=…/*` too: DuckDB reads
every file a glob names, dot-files included) reads exactly the current version.

`CURRENT` is written after the swap, so a crash in between leaves it naming the version
before; it is trusted only while the partition's files are the ones its manifest lists
(names, sizes, modification times), and otherwise the version is computed from the content.
`gc` deletes kept versions older than the retention that no registered model version
references; the current version is never in the store, so never deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

VERSIONS = "_versions"
CURRENT = "CURRENT"
_CHUNK = 1 << 20


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    partial.write_text(text)
    os.replace(partial, path)


def content_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def listing(directory: Path) -> list[dict]:
    """The files of a directory by name, size and modification time: cheap, no reading."""
    return [
        {"name": p.relative_to(directory).as_posix(), "bytes": (s := p.stat()).st_size}
        | {"mtime_ns": s.st_mtime_ns}
        for p in content_files(directory)
    ]


def describe_content(directory: Path) -> tuple[str, list[dict]]:
    """(version id, files) of a directory's content, each file with its SHA-256."""
    files = [
        entry | {"sha256": _file_digest(directory / entry["name"])} for entry in listing(directory)
    ]
    total = hashlib.sha256()
    for entry in sorted(files, key=lambda f: (f["sha256"], f["bytes"])):
        total.update(f"{entry['sha256']}:{entry['bytes']}\n".encode())
    return total.hexdigest()[:20], files


def parquet_rows(directory: Path, files: list[dict]) -> int | None:
    """Rows of the Parquet files among `files` (None when there are none)."""
    parquet = [directory / f["name"] for f in files if f["name"].endswith(".parquet")]
    if not parquet:
        return None
    try:
        return sum(pq.read_metadata(p).num_rows for p in parquet)
    except (OSError, pa.ArrowException):  # not readable Parquet: a broken partition
        return None


@dataclass(frozen=True)
class Manifest:
    """What a published partition version is."""

    version: str
    table: str  # <zone>/<table>
    partition: str  # the partition key
    path: str  # the partition's path inside its table (date=…[/hour=…])
    files: list[dict]  # name, bytes, mtime_ns, sha256
    rows: int | None  # rows of its Parquet files (None for a partition of JSON records)
    published_at: str
    run_id: str | None = None
    replaced_at: str | None = None  # when it stopped being current (kept versions)
    extra: dict = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return sum(f["bytes"] for f in self.files)

    def lists(self, files: list[dict]) -> bool:
        """Whether `files` (a listing) are this version's files, unchanged."""
        keys = ("name", "bytes", "mtime_ns")
        return [{k: f[k] for k in keys} for f in self.files] == [
            {k: f[k] for k in keys} for f in files
        ]


@dataclass(frozen=True)
class PartitionVersions:
    """The versions of one partition: its directory in the table and its place in the store."""

    root: Path  # the lake
    table: str  # <zone>/<table>
    path: str  # date=…[/hour=…]

    @classmethod
    def of(cls, root: Path, directory: Path) -> PartitionVersions:
        parts = directory.relative_to(root).parts
        return cls(root, "/".join(parts[:2]), "/".join(parts[2:]))

    @property
    def directory(self) -> Path:
        return self.root / self.table / self.path

    @property
    def store(self) -> Path:
        return self.root / VERSIONS / self.table / self.path

    def manifest_file(self, version: str) -> Path:
        return self.store / f"{version}.json"

    def kept_dir(self, version: str) -> Path:
        return self.store / version

    def manifest(self, version: str) -> Manifest | None:
        try:
            return Manifest(**json.loads(self.manifest_file(version).read_text()))
        except FileNotFoundError:
            return None

    def write_manifest(self, manifest: Manifest) -> None:
        self.store.mkdir(parents=True, exist_ok=True)
        _write_atomically(
            self.manifest_file(manifest.version),
            json.dumps(asdict(manifest), indent=2, sort_keys=True),
        )

    def describe(self, directory: Path, partition: str, run_id: str | None) -> Manifest:
        version, files = describe_content(directory)
        rows = parquet_rows(directory, files)
        return Manifest(version, self.table, partition, self.path, files, rows, _utc_now(), run_id)

    def current(self) -> Manifest | None:
        """The manifest of the version the partition holds now (None: no partition). Trusts
        CURRENT only while the files are the ones its manifest lists; computes otherwise."""
        if not self.directory.is_dir():
            return None
        try:
            named = self.manifest((self.store / CURRENT).read_text().strip())
        except FileNotFoundError:
            named = None
        if named is not None and named.lists(listing(self.directory)):
            return named
        found = self.manifest(describe_content(self.directory)[0])
        return found or self.describe(self.directory, self.path, None)

    def set_current(self, manifest: Manifest) -> None:
        self.write_manifest(manifest)
        _write_atomically(self.store / CURRENT, manifest.version)

    def keep(self, old_directory: Path, old: Manifest) -> None:
        """Move a replaced partition directory (holding version `old`) into the store; when
        that version is kept there already, the directory just goes."""
        destination = self.kept_dir(old.version)
        if destination.exists():
            shutil.rmtree(old_directory, ignore_errors=True)
        else:
            self.store.mkdir(parents=True, exist_ok=True)
            old_directory.rename(destination)
        self.write_manifest(replace(old, replaced_at=_utc_now()))

    def kept(self) -> Iterator[tuple[Path, Manifest]]:
        """The kept versions of the partition, with their manifests."""
        if not self.store.is_dir():
            return
        for directory in sorted(
            d for d in self.store.iterdir() if d.is_dir() and "=" not in d.name
        ):
            manifest = self.manifest(directory.name) or replace(
                self.describe(directory, self.path, None), replaced_at=_mtime(directory)
            )
            yield directory, manifest


def _mtime(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")


def version_of(directory: Path, root: Path) -> str:
    """The version id of a partition directory of the lake at `root`."""
    manifest = PartitionVersions.of(root, directory).current()
    return manifest.version if manifest else describe_content(directory)[0]


def combined_version(versions: dict[str, str]) -> str:
    """One id for several partitions' versions (a run over a range)."""
    if len(versions) == 1:
        return next(iter(versions.values()))
    payload = json.dumps(versions, sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()[:20]


def partition_dirs(table_dir: Path) -> list[Path]:
    """The partition directories of a table: its hours (hourly tables) or its days."""
    hours = sorted(d for d in table_dir.glob("date=*/hour=*") if d.is_dir())
    return hours or sorted(d for d in table_dir.glob("date=*") if d.is_dir())


def current_versions(root: Path, table: str) -> Iterator[tuple[Path, Manifest]]:
    """Every current partition of a table (`<zone>/<table>`) with its manifest."""
    for directory in partition_dirs(root / table):
        manifest = PartitionVersions.of(root, directory).current()
        if manifest is not None:
            yield directory, manifest


def kept_versions(root: Path, table: str | None = None) -> Iterator[tuple[Path, Manifest]]:
    """Every kept version in the store (of one `<zone>/<table>`, or all), with its manifest."""
    store = root / VERSIONS
    tables = (
        [table]
        if table
        else sorted("/".join(d.relative_to(store).parts) for d in store.glob("*/*") if d.is_dir())
    )
    for location in tables:
        for directory in partition_dirs(store / location):
            path = directory.relative_to(store / location).as_posix()
            yield from PartitionVersions(root, location, path).kept()


@dataclass(frozen=True)
class Collected:
    """What `gc` removed, kept because referenced, and left because still young."""

    removed: list[Manifest]
    referenced: list[Manifest]
    young: list[Manifest]

    @property
    def freed_bytes(self) -> int:
        return sum(m.bytes for m in self.removed)


def collect_garbage(
    root: Path,
    referenced: Iterable[tuple[str, str, str]],
    retention: timedelta,
    now: datetime | None = None,
) -> Collected:
    """Delete the kept versions replaced longer than `retention` ago that no registered model
    version references (`referenced`: (table, partition key, version)). Current versions are
    not in the store, so never touched."""
    now = now or datetime.now(timezone.utc)
    keep_these = set(referenced)
    removed, kept_referenced, young = [], [], []
    for directory, manifest in list(kept_versions(root)):
        if (manifest.table, manifest.partition, manifest.version) in keep_these:
            kept_referenced.append(manifest)
        elif _since(manifest) > now - retention:
            young.append(manifest)
        else:
            shutil.rmtree(directory)
            with_manifest = directory.with_name(f"{directory.name}.json")
            with_manifest.unlink(missing_ok=True)
            removed.append(manifest)
    return Collected(removed, kept_referenced, young)


def _since(manifest: Manifest) -> datetime:
    """When a kept version stopped being current."""
    return datetime.fromisoformat(manifest.replaced_at or manifest.published_at)
