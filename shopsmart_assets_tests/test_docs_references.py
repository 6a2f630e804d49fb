"""The docs name real tests: every `test_file.py` and `test_file.py::test_name` (or
`::Class::test_name`) in README.md and docs/ is a test module of this suite and a test in it,
so that the fault table of docs/reliability.md and the rest stay true as tests are renamed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
# a test module, optionally with ::-separated names (a parametrized id in brackets is allowed)
REFERENCE = re.compile(r"\b(test_\w+\.py)((?:::\w+)*)")


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def references(text: str) -> list[tuple[str, list[str]]]:
    return [
        (m.group(1), [n for n in m.group(2).split("::") if n]) for m in REFERENCE.finditer(text)
    ]


def defined(module: Path) -> set[tuple[str, ...]]:
    """The test functions and classes of a module, and the methods of its classes, as paths."""
    names: set[tuple[str, ...]] = set()
    for node in ast.parse(module.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add((node.name,))
        elif isinstance(node, ast.ClassDef):
            names.add((node.name,))
            names |= {
                (node.name, item.name)
                for item in node.body
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
            }
    return names


def missing_tests(text: str) -> list[str]:
    """The references in `text` that name no test module, or no test in it."""
    missing = []
    for file, names in references(text):
        module = TESTS / file
        if not module.is_file():
            missing.append(file)
        elif names and tuple(names) not in defined(module):
            missing.append(f"{file}::{'::'.join(names)}")
    return missing


def test_every_test_the_docs_name_exists():
    found = {
        doc.relative_to(ROOT).as_posix(): missing_tests(doc.read_text()) for doc in documents()
    }
    assert sum(len(references(doc.read_text())) for doc in documents()) > 30
    assert {doc: names for doc, names in found.items() if names} == {}


def test_a_renamed_test_is_caught():
    text = (
        "`test_lake.py::test_only_real_partition_keys_become_paths`, "
        "`test_spark_services.py::TestSparkConnect::test_a_connect_step_starts_no_jvm`, "
        "`test_lake.py::test_partition_paths_are_validated`, `test_nowhere.py`"
    )
    assert missing_tests(text) == [
        "test_lake.py::test_partition_paths_are_validated",
        "test_nowhere.py",
    ]


COMMAND = re.compile(r"(?:bin/|`)(shopsmart-[a-z]+(?:-[a-z]+)*)(?=[ \n])")


def console_scripts() -> set[str]:
    import tomllib

    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])


def test_every_command_the_docs_name_is_installed():
    named = {c for doc in documents() for c in COMMAND.findall(doc.read_text())}
    assert {"shopsmart-lake", "shopsmart-model", "shopsmart-backfill"} <= named
    assert named - console_scripts() == set()
