"""Who answers for each asset: owners follow the asset's group, in one table (`OWNERS`),
shown in the UI on every asset."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import dagster as dg

DATA_PLATFORM = "team:data-platform"
ML = "team:ml"
# Asset group → who answers for its assets (Dagster accepts e-mail addresses or `team:name`).
OWNERS: Mapping[str, Sequence[str]] = {
    "raw": (DATA_PLATFORM,),
    "lake": (DATA_PLATFORM,),
    "features": (DATA_PLATFORM,),
    "ml": (ML,),
}


def with_owners(assets: Iterable[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """The assets with their group's owners (owners an asset declares itself are kept)."""

    def owned(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.group_name not in OWNERS:
            raise KeyError(f"{spec.key.to_user_string()}: no owners for group {spec.group_name}")
        return spec.replace_attributes(owners=list(spec.owners or OWNERS[spec.group_name]))

    return [a.map_asset_specs(owned) for a in assets]
