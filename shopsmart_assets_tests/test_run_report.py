"""What the cluster and compose commands print about a run (cli/run_report.py): a failed run in
one line, the failing step and its own error, a URL's password masked."""

from __future__ import annotations

import dagster as dg

from shopsmart_assets.cli.run_report import failure_line
from shopsmart_assets.settings import mask_urls

BROKER = "redis://:s3cr3t-pass@10.0.0.7:6379/0"


@dg.op
def extract() -> int:
    return 1


@dg.op
def send_to_broker(rows: int) -> None:
    raise ConnectionError(f"Error 111 connecting to {BROKER}. Connection refused.")


@dg.job
def failing_job() -> None:
    send_to_broker(extract())


@dg.op
def publish(rows: int) -> None:
    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except ConnectionRefusedError as refused:
        raise RuntimeError(f"could not reach the broker {BROKER}") from refused


@dg.job
def chained_job() -> None:
    publish(extract())


@dg.job
def fine_job() -> None:
    extract()


def failure_of(job: dg.JobDefinition) -> str | None:
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        return failure_line(instance, result.run_id)


def test_a_failed_run_is_told_in_one_line_naming_the_step_and_its_error():
    line = failure_of(failing_job)
    assert line == (
        "step send_to_broker failed: ConnectionError: Error 111 connecting to "
        "redis://:***@10.0.0.7:6379/0. Connection refused."
    )
    assert "\n" not in line and "s3cr3t" not in line


def test_a_chained_error_gives_its_own_words_and_the_systems():
    assert failure_of(chained_job) == (
        "step publish failed: RuntimeError: could not reach the broker "
        "redis://:***@10.0.0.7:6379/0 (caused by ConnectionRefusedError: [Errno 111] "
        "Connection refused)"
    )


def test_a_run_that_did_not_fail_has_no_failure_line():
    assert failure_of(fine_job) is None


def test_every_url_password_in_a_text_is_masked():
    text = f"broker {BROKER}, backend postgresql+psycopg2://user:pw@db:5432/x, plain http://h/p"
    assert mask_urls(text) == (
        "broker redis://:***@10.0.0.7:6379/0, backend postgresql+psycopg2://user:***@db:5432/x, "
        "plain http://h/p"
    )
