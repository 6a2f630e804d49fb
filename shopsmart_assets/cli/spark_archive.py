"""`shopsmart-spark-archive`: write the archive of Spark's classes that local-mode Spark steps
map at their start (resources/spark_archive.py), for the installed pyspark and the drivers'
JVM options. `make install` runs it; it does nothing when the archive is already there.

    shopsmart-spark-archive            write it unless it exists; remove stale ones
    shopsmart-spark-archive --force    write it again
    shopsmart-spark-archive --where    print where it is (or would be), nothing else
"""

from __future__ import annotations

import argparse
import time

from shopsmart_assets.resources.spark import LOCAL_DRIVER_JAVA_OPTIONS, local_driver_archive
from shopsmart_assets.resources.spark_archive import write_archive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shopsmart-spark-archive", description=__doc__)
    parser.add_argument("--force", action="store_true", help="write it even if it exists")
    parser.add_argument("--where", action="store_true", help="print its path and exit")
    args = parser.parse_args(argv)
    archive = local_driver_archive()
    if args.where:
        print(archive)
        return 0
    for stale in archive.parent.glob("spark-driver-*.jsa"):
        if stale != archive:
            stale.unlink(missing_ok=True)
    if archive.is_file() and not args.force:
        print(f"shopsmart-spark-archive: {archive} is in place")
        return 0
    started = time.monotonic()
    try:
        written = write_archive(archive, LOCAL_DRIVER_JAVA_OPTIONS)
    except OSError as error:  # an environment this user cannot write into
        print(f"shopsmart-spark-archive: cannot write {archive}: {error}")
        return 1
    if not written:
        print("shopsmart-spark-archive: no archive written; Spark steps start without one")
        return 1
    size = archive.stat().st_size / 2**20
    print(
        f"shopsmart-spark-archive: wrote {archive} ({size:,.0f} MiB) in "
        f"{time.monotonic() - started:.0f} s; local-mode Spark steps map it"
    )
    return 0
