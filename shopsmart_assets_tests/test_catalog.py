"""What the UI's catalog shows without running anything: every lake table's columns
described in one place (defs/column_catalog.py) and shown on the assets and in docs/lake.md,
owners and a docs link on every asset, links to partitions in the shape the Dagster UI
uses."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import pytest

from shopsmart_assets.cli import lake_docs
from shopsmart_assets.definitions import build_assets
from shopsmart_assets.defs import column_catalog as columns
from shopsmart_assets.defs.links import DOCS, anchor, asset_url, docs_link
from shopsmart_assets.defs.ml.training_set import EXAMPLES_SCHEMA
from shopsmart_assets.defs.ownership import OWNERS
from shopsmart_assets.lake import lake_tables
from shopsmart_assets.lake.metadata import column_schema_key, written_schema
from shopsmart_assets.partitions import build_partitions
from shopsmart_assets.sources.tables import RAW_SCHEMAS

ROOT = Path(__file__).resolve().parents[1]
LAKE_DOCS = ROOT / "docs" / "lake.md"


@pytest.fixture(scope="module")
def specs() -> dict[str, dg.AssetSpec]:
    assets = build_assets(build_partitions("2026-01-01", "UTC"))
    return {spec.key.to_user_string(): spec for a in assets for spec in a.specs}


def test_docs_lake_md_shows_the_column_tables_of_the_code():
    """Fails when docs/lake.md is out of date: run
    `shopsmart-lake-docs --write-docs docs/lake.md`."""
    assert lake_docs.docs_problems(LAKE_DOCS) == []
    assert lake_docs.main(["--check-docs", str(LAKE_DOCS)]) == 0


def test_the_docs_command_rewrites_a_stale_page_and_reports_it(tmp_path, capsys):
    page = tmp_path / "lake.md"
    stale = LAKE_DOCS.read_text().replace("| `amount_usd` |", "| `amount_usd_old` |")
    page.write_text(stale)
    assert lake_docs.main(["--check-docs", str(page)]) == 1
    assert "--write-docs" in capsys.readouterr().err
    assert lake_docs.main(["--write-docs", str(page)]) == 0
    assert page.read_text() == LAKE_DOCS.read_text()
    # a table the page lacks is reported; a marker naming no table is an error
    page.write_text(stale.replace("<!-- columns:scores/purchase_propensity -->", ""))
    assert lake_docs.docs_problems(page)[0].endswith(
        "no column table for scores/purchase_propensity"
    )
    with pytest.raises(KeyError, match="curated/nothing"):
        lake_docs.render_docs("<!-- columns:curated/nothing -->\n<!-- /columns -->")


def test_every_lake_table_has_a_description_for_every_column(specs):
    locations = set(lake_tables(specs.values()).values())
    tables = {loc for loc in locations if not loc.startswith("models/")}  # JSON records
    assert set(columns.TABLES) == tables
    for location, schema in columns.TABLES.items():
        names = [c.name for c in schema.columns]
        assert len(names) == len(set(names)), location
        for column in schema.columns:
            assert column.type and len(column.description or "") > 15, (location, column.name)
        # the Hive columns, last: in the path, not in the files
        hive = ["date", "hour"] if location in ("raw/orders", "raw/order_items") else ["date"]
        assert [n for n in names if n in columns.PARTITION_COLUMNS] == hive, location
        assert names[-len(hive) :] == hive, location


def test_declared_types_are_those_the_writers_declare():
    for table, schema in RAW_SCHEMAS.items():
        declared = columns.TABLES[f"raw/{table}"].columns
        assert [(c.name, c.type) for c in declared[: len(schema)]] == [
            (f.name, str(f.type)) for f in schema
        ]
    training = columns.TABLES["features/training_set"].columns
    assert [(c.name, c.type) for c in training[:-1]] == [
        (f.name, str(f.type)) for f in EXAMPLES_SCHEMA
    ]


def test_every_table_asset_shows_its_documented_columns_before_any_run(specs):
    for name, spec in specs.items():
        roles = {
            table.removeprefix(name).lstrip("#") or None: location
            for table, location in lake_tables([spec]).items()
        }
        for role, location in roles.items():
            documented = columns.column_schema(location)
            shown = spec.metadata.get(column_schema_key(role))
            if isinstance(shown, dg.TableSchemaMetadataValue):
                shown = shown.schema
            assert shown == documented, (name, role)
    assert column_schema_key("quarantine") in specs["lake/purchases"].metadata


def test_a_materialization_reports_the_written_types_with_the_descriptions():
    import pyarrow as pa

    written = pa.schema(
        [("customer_id", pa.int64()), ("score", pa.float32()), ("extra", pa.int8())]
    )
    schema = written_schema(written, columns.TABLES["scores/purchase_propensity"])
    assert [(c.name, c.type) for c in schema.columns] == [
        ("customer_id", "int64"),
        ("score", "float"),
        ("extra", "int8"),
        ("date", "date"),
    ]
    assert schema.columns[1].description.startswith("Probability")
    assert schema.columns[2].description is None  # undocumented: the chain test fails on it


def test_every_asset_has_owners_and_a_docs_link_to_a_section_that_exists(specs):
    pages = {page: (ROOT / "docs" / page).read_text() for page in ("lake.md", "ml.md")}
    headings = {
        page: {anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}
        for page, text in pages.items()
    }
    for name, spec in specs.items():
        assert spec.owners and list(spec.owners) == list(OWNERS[spec.group_name]), name
        link = spec.metadata[DOCS]
        assert isinstance(link, dg.PathMetadataValue), name
        page, fragment = link.path.removeprefix("docs/").split("#")
        assert fragment in headings[page], (name, link.path)
    assert specs["ml/purchase_model"].owners == ["team:ml"]
    assert specs["raw/orders"].owners == ["team:data-platform"]


def test_docs_links_are_urls_under_shopsmart_docs_url_and_paths_without_it(monkeypatch):
    monkeypatch.delenv("SHOPSMART_DOCS_URL", raising=False)
    assert docs_link("lake.md", "Purchases and quarantine") == {
        DOCS: dg.MetadataValue.path("docs/lake.md#purchases-and-quarantine")
    }
    monkeypatch.setenv("SHOPSMART_DOCS_URL", "https://git.example.com/shopsmart/blob/main/docs/")
    assert docs_link("ml.md", "The model: runs, versions, champion") == {
        DOCS: dg.MetadataValue.url(
            "https://git.example.com/shopsmart/blob/main/docs/ml.md#the-model-runs-versions-champion"
        )
    }


def test_partition_links_open_the_partition_in_the_dagster_ui(monkeypatch):
    monkeypatch.setenv("SHOPSMART_UI_URL", "http://127.0.0.1:3333/")
    key = dg.AssetKey(["ml", "training_set"])
    # the UI's own link to a partition: the asset page's Partitions tab, partition selected
    assert (
        asset_url(key, "2026-01-05")
        == "http://127.0.0.1:3333/assets/ml/training_set?view=partitions&partition=2026-01-05"
    )
    assert asset_url(dg.AssetKey(["raw", "orders"]), "2026-01-05-13:00").endswith(
        "/assets/raw/orders?view=partitions&partition=2026-01-05-13%3A00"
    )
    assert asset_url(key) == "http://127.0.0.1:3333/assets/ml/training_set"
