"""The layers and their allowed imports (docs/architecture.md, "Layers"), checked on the source.

Each rule names a package and the packages it must not import; imports are read with `ast`,
so a lazy import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# (the modules under this path, may not import modules starting with any of these)
FORBIDDEN = [
    ("common", ("region", "rack")),
    ("rack", ("region",)),
    ("region", ("rack",)),
    ("region/services", ("region.api",)),
    ("region/db", ("region.api", "region.services", "region.vmhosts", "region.rpc", "region.service")),
    ("region/placement.py", ("region", "common", "twisted", "psycopg2", "pylxd", "socket", "os", "subprocess")),
    ("region/netconstraints.py", ("region", "common", "twisted", "psycopg2", "pylxd", "socket", "os",
                                  "subprocess")),
    ("region/number_input.py", ("region", "common", "twisted", "psycopg2", "pylxd", "socket", "os", "subprocess")),
]

# SQL is written only in region/db (embedded_pg runs initdb/pg_ctl, not SQL).
SQL_ALLOWED = ("region/db/",)
_SQL = re.compile(r"\.execute\(|\bSELECT\b.+\bFROM\b|\bINSERT INTO\b|\bUPDATE\s+\w+\s+SET\b|\bFOR UPDATE\b|"
                  r"SET TRANSACTION")


def _modules(path: str) -> list[Path]:
    p = ROOT / path
    return [p] if p.is_file() else sorted(p.rglob("*.py"))


def _imports(source: Path) -> list[tuple[int, str]]:
    tree = ast.parse(source.read_text(), str(source))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("package,banned", FORBIDDEN, ids=[f[0] for f in FORBIDDEN])
def test_layer_imports(package, banned):
    bad = []
    for module in _modules(package):
        for line, name in _imports(module):
            if any(name == b or name.startswith(b + ".") for b in banned):
                bad.append(f"{module.relative_to(ROOT)}:{line} imports {name}")
    assert bad == [], "layer rule broken:\n" + "\n".join(bad)


def test_sql_lives_only_in_region_db():
    bad = []
    for module in _modules("region"):
        rel = str(module.relative_to(ROOT))
        if rel.startswith(SQL_ALLOWED) or rel == "region/embedded_pg.py":
            continue
        for n, text in enumerate(module.read_text().splitlines(), 1):
            if _SQL.search(text):
                bad.append(f"{rel}:{n}: {text.strip()}")
    assert bad == [], "SQL outside region/db:\n" + "\n".join(bad)


def test_domain_never_imports_the_api():
    """Only the HTTP layer itself and the process that serves it know region.api."""
    bad = []
    for module in _modules("region"):
        rel = str(module.relative_to(ROOT))
        if rel.startswith(("region/api/", "region/cli/")) or rel == "region/service.py":
            continue
        for line, name in _imports(module):
            if name == "region.api" or name.startswith("region.api."):
                bad.append(f"{rel}:{line} imports {name}")
    assert bad == [], "the domain imports the API:\n" + "\n".join(bad)
