"""The automation switch: with SHOPSMART_AUTOMATION=on every schedule and sensor starts
running when the code location loads (production, `make live`); off by default, so that
nothing moves while a user looks around (each can be turned on in the UI)."""

from __future__ import annotations

import dagster as dg

from shopsmart_assets import settings


def schedule_status() -> dg.DefaultScheduleStatus:
    return (
        dg.DefaultScheduleStatus.RUNNING
        if settings.automation_on()
        else dg.DefaultScheduleStatus.STOPPED
    )


def sensor_status() -> dg.DefaultSensorStatus:
    return (
        dg.DefaultSensorStatus.RUNNING
        if settings.automation_on()
        else dg.DefaultSensorStatus.STOPPED
    )
