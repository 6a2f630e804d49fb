"""Asset checks beyond those the assets report themselves.

The assets carry their own blocking checks (`lake/purchases` reconciles valid + quarantined
with the source rows; `ml/purchase_model` gates the champion). Here: freshness. Yesterday's
partition of the purchases, the features and the champion model must be in by
SHOPSMART_FRESHNESS_DEADLINE (06:00 local time by default). `freshness_schedule` evaluates the
checks at the deadline; a failure shows red in the UI and `slack_on_failed_freshness` alerts.
"""

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg

from shopsmart_assets import settings
from shopsmart_assets.assets.features import CUSTOMER_FEATURES_KEY
from shopsmart_assets.assets.lake import PURCHASES_KEY
from shopsmart_assets.assets.ml import CHAMPION_MODEL_KEY
from shopsmart_assets.partitions import previous_day_key

FRESH_BY_DEADLINE = (PURCHASES_KEY, CUSTOMER_FEATURES_KEY, CHAMPION_MODEL_KEY)
FRESHNESS_CHECK = "yesterday_in_by_deadline"


def deadline_cron() -> str:
    hours, minutes = (int(part) for part in settings.freshness_deadline().split(":"))
    return f"{minutes} {hours} * * *"


def freshness_result(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, now: datetime
) -> dg.AssetCheckResult:
    """Passes when the partition of the day before `now` is materialized."""
    day = previous_day_key(now)
    present = day in instance.get_materialized_partitions(asset_key)
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=FRESHNESS_CHECK,
        passed=present,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"{asset_key.to_user_string()} {day} is in"
            if present
            else f"{asset_key.to_user_string()} {day} is not in by "
            f"{settings.freshness_deadline()} ({settings.timezone()})"
        ),
        metadata={"expected_partition": day, "evaluated_at": now.isoformat()},
    )


def _freshness_check(asset_key: dg.AssetKey) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset_key,
        name=FRESHNESS_CHECK,
        description=f"Yesterday's partition is materialized by {settings.freshness_deadline()}"
        f" ({settings.timezone()}).",
    )
    def check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        return freshness_result(
            context.instance, asset_key, datetime.now(ZoneInfo(settings.timezone()))
        )

    return check


freshness_checks = [_freshness_check(key) for key in FRESH_BY_DEADLINE]


def freshness_check_keys() -> list[dg.AssetCheckKey]:
    return [dg.AssetCheckKey(key, FRESHNESS_CHECK) for key in FRESH_BY_DEADLINE]
