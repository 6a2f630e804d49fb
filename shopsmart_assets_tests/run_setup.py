"""The test run's set-up, before anything else is imported (conftest.py imports this module
first): where its temporary files go, a data directory of its own, the JVM options of its Spark
drivers, and the run-wide directory its workers share, with the hooks that make and remove it
and the helper that builds a fixture once for the whole run. Registered as a pytest plugin."""

from __future__ import annotations

import atexit
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from filelock import FileLock

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def _ram_temp_dir() -> Path | None:
    """A private directory on a RAM file system (/dev/shm), or None where there is none."""
    ram = Path("/dev/shm")
    if not (ram.is_dir() and os.access(ram, os.W_OK)):
        return None
    if shutil.disk_usage(ram).free < 4 * 2**30:  # a container's 64 MiB /dev/shm: the disk
        return None
    directory = ram / f"shopsmart-tests-{os.getuid()}"
    directory.mkdir(mode=0o700, exist_ok=True)
    stat = directory.stat()
    return directory if stat.st_uid == os.getuid() and stat.st_mode & 0o077 == 0 else None


# The test run's temporary files (pytest's tmp_path, the generated SQLite sources, Dagster
# instances, MLflow and Feast stores, lakes) on a RAM file system where there is one, unless
# TMPDIR says otherwise: SQLite commits every Dagster event, and an fsync on a VM's disk is
# slow (docs/performance.md has the figures). Set before any temporary directory is made; the
# workers and the
# processes the tests start (`dagster` commands, `dagster dev`) inherit it through TMPDIR.
if "TMPDIR" not in os.environ and (_RAM_TEMP := _ram_temp_dir()) is not None:
    os.environ["TMPDIR"] = str(_RAM_TEMP)
    tempfile.tempdir = str(_RAM_TEMP)
# Nothing a test runs may touch the developer's own data directory (`make test` exports the
# one `make demo` uses): tests that need one set their own.
os.environ["SHOPSMART_DATA_DIR"] = tempfile.mkdtemp(prefix="shopsmart-tests-data-")
atexit.register(shutil.rmtree, os.environ["SHOPSMART_DATA_DIR"], ignore_errors=True)
# The test run's Spark drivers run small, short jobs, and on 2 cores the suite's time is CPU
# time: the JIT's first tier only and the serial collector roughly halve a driver JVM's CPU,
# not verifying the bytecode of Spark's own jars as they load saves more, and the drivers map
# Spark's classes from an archive the run writes at its start (jvm_archive.py); the figures are
# in docs/performance.md. Given through PYSPARK_SUBMIT_ARGS (pytest_configure), which every driver
# pyspark launches in this test run reads (in process, `dagster` commands, `dagster dev`), with
# no Spark conf directory: the JVM maps no archive with a non-empty directory on its class
# path. At real volumes the full JIT wins: users and `make bench` keep the JVM's defaults. The
# executors a driver of this test run starts on a standalone cluster get the same JIT flags.
TEST_JVM_OPTIONS = (
    "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC "
    "-XX:+UnlockDiagnosticVMOptions -XX:-BytecodeVerificationRemote"
)
os.environ.pop("SPARK_CONF_DIR", None)

from shopsmart_assets.resources.spark_archive import archive_options, submit_args  # noqa: E402
from shopsmart_assets_tests.jvm_archive import (  # noqa: E402
    ClassArchiveBuild,
    wait_for_class_archive,
)

T = TypeVar("T")


# A directory of the whole test run, made by its controller (the xdist controller, or the only
# process) before any worker starts, and shared by the workers through the environment.
RUN_DIR_VAR = "SHOPSMART_TEST_RUN_DIR"
SPARK_CONNECT = "spark-connect"
CLASS_ARCHIVE = "spark-classes.jsa"
_ARCHIVE_BUILD: list[ClassArchiveBuild] = []


def class_archive() -> Path | None:
    """Where the test run's archive of Spark's classes is (or will be) written."""
    run_dir = os.environ.get(RUN_DIR_VAR)
    return Path(run_dir) / CLASS_ARCHIVE if run_dir else None


def spark_classes_ready() -> None:
    """Wait for the run's archive of Spark's classes, if it is being written, before starting
    a long-lived or early driver (pytest_configure)."""
    if archive := class_archive():
        wait_for_class_archive(archive)


def pytest_configure(config: pytest.Config) -> None:
    """The controller makes the run's directory and, for a run on several workers (`make
    test`), starts writing Spark's class archive into it; every process of the run launches
    its drivers with the options that map it. A run in one process (`TEST_WORKERS=0`, one
    module while developing) starts at once, without: the archive takes about 45 s to write."""
    if not hasattr(config, "workerinput"):
        os.environ[RUN_DIR_VAR] = tempfile.mkdtemp(prefix="shopsmart-test-run-")
        if config.getoption("numprocesses", None) and not config.option.collectonly:
            archive = Path(os.environ[RUN_DIR_VAR]) / CLASS_ARCHIVE
            _ARCHIVE_BUILD.append(ClassArchiveBuild(archive, TEST_JVM_OPTIONS))
    where = class_archive()
    driver = f"{TEST_JVM_OPTIONS} {archive_options(where) if where else ''}".strip()
    os.environ["PYSPARK_SUBMIT_ARGS"] = submit_args(driver, TEST_JVM_OPTIONS)


def pytest_unconfigure(config: pytest.Config) -> None:
    """The controller stops what the workers shared, once every worker is done."""
    if hasattr(config, "workerinput") or RUN_DIR_VAR not in os.environ:
        return
    run_dir = Path(os.environ.pop(RUN_DIR_VAR))
    for build in _ARCHIVE_BUILD:
        build.stop()
    if (run_dir / f"{SPARK_CONNECT}.pickle").exists():
        from shopsmart_assets_tests.spark_services import stop_spark_connect

        stop_spark_connect(run_dir / SPARK_CONNECT)
    shutil.rmtree(run_dir, ignore_errors=True)


def once_per_test_run(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], T]
) -> T:
    """`build(directory)` once for the whole test run, however many xdist workers run it: the
    first worker to need it builds it under a file lock in the run's directory, the others
    wait for it and share it (read-only). Its result is pickled."""
    common = Path(os.environ.get(RUN_DIR_VAR) or tmp_path_factory.getbasetemp())
    done = common / f"{name}.pickle"
    with FileLock(common / f"{name}.lock"):
        if not done.exists():
            directory = common / name
            directory.mkdir()
            result = build(directory)
            done.write_bytes(pickle.dumps(result))
    return pickle.loads(done.read_bytes())
