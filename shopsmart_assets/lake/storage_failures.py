"""When the lake's storage refuses a write: a full disk, a read-only or forbidden lake.

None of these heals in seconds, and a retry would read the whole day again for nothing: a
step that meets one fails at once (no retries), with one line that says what happened and
where (the assets and partitions, the lake path, the OS error) and that the partitions it was
writing keep their previous version (nothing of them was published: writes go to staging and
are swapped in only when whole). The Slack alert carries that line.

The OS error is found in the error itself: Python's and pyarrow's OSErrors carry their errno;
Spark's (a Py4JJavaError in local mode, a SparkException from Spark Connect, with the JVM's
stack in its text) names it in words ("java.io.IOException: No space left on device").
Where Spark says only "Mkdirs failed to create …" (a read-only or forbidden lake), a small
test write into the lake finds the OS error.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import dagster as dg

STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
# How the JVM (Hadoop's local file system, java.nio) words those errors in Spark's messages.
JVM_WORDS = {
    "No space left on device": errno.ENOSPC,
    "Disk quota exceeded": errno.EDQUOT,
    "Read-only file system": errno.EROFS,
    "AccessDeniedException": errno.EACCES,
    "Permission denied": errno.EACCES,
    "Operation not permitted": errno.EPERM,
}
WHAT_TO_DO = {
    errno.ENOSPC: "free space on it, then re-run",
    errno.EDQUOT: "raise the quota or free space, then re-run",
    errno.EROFS: "make it writable (it is mounted read-only), then re-run",
    errno.EACCES: "let user {user} write there, then re-run",
    errno.EPERM: "let user {user} write there, then re-run",
}


class LakeStorageError(OSError):
    """The lake's storage refused a write; its message is the whole story, in one line."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.errno = code


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _from_spark(error: BaseException) -> bool:
    return type(error).__module__.split(".")[0] in {"py4j", "pyspark"}


def _inside(filename: str | os.PathLike | None, root: Path) -> bool:
    if filename is None:
        return True  # pyarrow's errors name no file
    return Path(os.fsdecode(filename)).resolve().is_relative_to(root.resolve())


def os_error_of(error: BaseException, root: Path) -> int | None:
    """The errno of a storage failure behind `error`, if it is one: an OSError about a file in
    the lake (or about none), or a Spark error whose JVM stack names one."""
    for link in _chain(error):
        if isinstance(link, OSError) and link.errno in STORAGE_ERRNOS:
            if _inside(link.filename, root):
                return link.errno
        elif _from_spark(link):
            text = str(link)
            found = [(text.find(words), code) for words, code in JVM_WORDS.items() if words in text]
            if found:
                return min(found)[1]
    return None


def probe(directory: Path) -> int | None:
    """Write, sync and remove a small file in `directory` (or its nearest existing parent):
    the errno if the file system refuses it."""
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    path = directory / f".write-probe-{uuid.uuid4().hex}"
    try:
        with open(path, "wb") as handle:
            handle.write(b"\0" * 4096)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        return error.errno if error.errno in STORAGE_ERRNOS else None
    finally:
        with suppress(OSError):
            path.unlink()
    return None


def failure_line(what: str, table_dir: Path, code: int) -> str:
    """The one line a failed step, the UI and the Slack alert show."""
    name = errno.errorcode.get(code, str(code))
    free = ""
    if code in (errno.ENOSPC, errno.EDQUOT):
        with suppress(OSError):
            free = f", {shutil.disk_usage(_existing(table_dir)).free:,} bytes free"
    todo = WHAT_TO_DO[code].format(user=_user())
    return (
        f"{what}: the lake's storage refused the write: {os.strerror(code)} ({name}) at "
        f"{table_dir}{free}. Nothing of it was published: the previous version of each "
        f"partition is untouched. Not retried (waiting will not fix it): {todo}."
    )


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _user() -> str:
    return f"{os.getuid()}" if hasattr(os, "getuid") else "this process"


@contextmanager
def storage_failures(what: str, table_dir: Path, root: Path) -> Iterator[None]:
    """Turn a storage failure inside the block into a failure of the step, at once (no
    retries), named in one line; any other error goes on as it is (a source that blinks is
    still retried). Deliberate failures (dg.Failure) pass untouched."""
    try:
        yield
    except dg.Failure:
        raise
    except Exception as error:
        code = os_error_of(error, root)
        if code is None and _from_spark_anywhere(error):
            code = probe(root / "_staging")
        if code is None:
            raise
        line = failure_line(what, table_dir, code)
        cause = LakeStorageError(line, code)
        raise dg.Failure(
            description=line,
            allow_retries=False,
            metadata={
                "os_error": errno.errorcode.get(code, str(code)),
                "lake_path": str(table_dir),
            },
        ) from cause


def _from_spark_anywhere(error: BaseException) -> bool:
    return any(_from_spark(link) for link in _chain(error))
