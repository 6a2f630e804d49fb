"""`shopsmart-lake-docs`: the lake's column tables in docs/lake.md, generated from the column
catalog (defs/column_catalog.py) that the UI shows, or checked against it (the test suite
fails while the page is out of date)."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from shopsmart_assets.defs.column_catalog import TABLES

_MARKED = re.compile(
    r"(?P<open><!-- columns:(?P<table>[^ ]+) -->\n)(?P<body>.*?)(?P<close><!-- /columns -->)",
    re.S,
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(schema: dg.TableSchema) -> str:
    rows = ["| column | type | description |", "|---|---|---|"]
    rows += [f"| `{c.name}` | `{c.type}` | {_cell(c.description or '')} |" for c in schema.columns]
    return "\n".join(rows) + "\n"


def render_docs(text: str) -> str:
    """`text` with every marked table regenerated from TABLES."""

    def table(match: re.Match[str]) -> str:
        location = match["table"]
        if location not in TABLES:
            raise KeyError(f"docs mark columns of {location!r}, which is no lake table")
        return match["open"] + markdown_table(TABLES[location]) + match["close"]

    return _MARKED.sub(table, text)


def unmarked_tables(text: str) -> list[str]:
    """The lake tables the page has no marked column table for."""
    marked = {m["table"] for m in _MARKED.finditer(text)}
    return [location for location in TABLES if location not in marked]


def docs_problems(path: Path) -> list[str]:
    """Why the page is not what `--write-docs` would make it (none when it is)."""
    text = path.read_text()
    problems = [f"{path}: no column table for {t}" for t in unmarked_tables(text)]
    if render_docs(text) != text:
        problems.append(f"{path}: column tables differ from defs/column_catalog.py")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="shopsmart-lake-docs",
        description="Regenerate (or check) the lake's column tables in a Markdown page, "
        "between <!-- columns:<zone>/<table> --> and <!-- /columns -->.",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write-docs", type=Path, metavar="PAGE")
    action.add_argument("--check-docs", type=Path, metavar="PAGE")
    args = parser.parse_args(argv)
    if args.write_docs:
        args.write_docs.write_text(render_docs(args.write_docs.read_text()))
    problems = docs_problems(args.write_docs or args.check_docs)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems and args.check_docs:
        print(
            f"run: shopsmart-lake-docs --write-docs {args.check_docs}",
            file=sys.stderr,
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
