"""Links the Dagster UI shows: each asset's section of docs/ (`docs_link`, under the `docs`
metadata key), and the UI's own pages of assets and partitions (for alerts and for the
metadata that says which partitions made a result)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import quote, urlencode

import dagster as dg

from shopsmart_assets import settings

DOCS = "docs"  # definition metadata: a link to the section of docs/ about the asset


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
