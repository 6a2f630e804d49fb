"""What the Dagster UI says about an asset beyond its code: who owns it, where its
documentation is, and links to the Dagster pages of the partitions that made a result.

Owners follow the asset's group, in one table (`OWNERS`); each asset names the section of
docs/ that documents it (`docs_link`), shown under the `docs` metadata key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import quote, urlencode

import dagster as dg

from shopsmart_assets import settings

DATA_PLATFORM = "team:data-platform"
ML = "team:ml"
# Asset group → who answers for its assets (Dagster accepts e-mail addresses or `team:name`).
OWNERS: Mapping[str, Sequence[str]] = {
    "raw": (DATA_PLATFORM,),
    "lake": (DATA_PLATFORM,),
    "features": (DATA_PLATFORM,),
    "ml": (ML,),
}
DOCS = "docs"  # definition metadata: a link to the section of docs/ about the asset


def with_owners(assets: Iterable[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """The assets with their group's owners (owners an asset declares itself are kept)."""

    def owned(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.group_name not in OWNERS:
            raise KeyError(f"{spec.key.to_user_string()}: no owners for group {spec.group_name}")
        return spec.replace_attributes(owners=list(spec.owners or OWNERS[spec.group_name]))

    return [a.map_asset_specs(owned) for a in assets]


def anchor(heading: str) -> str:
    """The fragment a Markdown renderer (GitHub, GitLab) gives a heading: lower case, spaces
    as hyphens, punctuation dropped."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def docs_link(page: str, heading: str) -> dict[str, dg.MetadataValue]:
    """Definition metadata pointing at the section `heading` of docs/`page`: a URL under
    SHOPSMART_DOCS_URL when it is set, else the path in the repository."""
    target = f"{page}#{anchor(heading)}"
    base = settings.docs_url()
    if base:
        return {DOCS: dg.MetadataValue.url(f"{base}/{target}")}
    return {DOCS: dg.MetadataValue.path(f"docs/{target}")}


def asset_url(key: dg.AssetKey, partition: str | None = None) -> str:
    """The asset's page in the Dagster UI; with a partition, that partition's details
    (the Partitions tab, as the UI links it: `?view=partitions&partition=…`)."""
    path = "/".join(quote(part, safe="") for part in key.path)
    query = f"?{urlencode({'view': 'partitions', 'partition': partition})}" if partition else ""
    return f"{settings.ui_url()}/assets/{path}{query}"


def partition_links(key: dg.AssetKey, partitions: Sequence[str]) -> dg.MetadataValue:
    """Links to these partitions of an asset in the Dagster UI, as Markdown."""
    name = key.to_user_string()
    return dg.MetadataValue.md(
        " · ".join(f"[{name} {p}]({asset_url(key, p)})" for p in partitions) or "none"
    )
