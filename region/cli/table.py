"""Plain-text tables for the CLI."""

from __future__ import annotations

from typing import Any


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(_cell(v) for v in value) or "-"
    return str(value)


def render_table(columns: list[tuple[str, str]], rows: list[dict]) -> str:
    """columns: (HEADER, key) pairs; key may be dotted ("zone.name")."""

    def get(row: dict, key: str) -> Any:
        for part in key.split("."):
            row = row.get(part) if isinstance(row, dict) else None
        return row

    cells = [[_cell(get(r, key)) for _, key in columns] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (h, _) in enumerate(columns)]
    lines = ["  ".join(h.ljust(w) for (h, _), w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def render_key_values(pairs: list[tuple[str, Any]]) -> str:
    """Aligned `Key: value` lines; values render as table cells do (None as "-")."""
    width = max((len(key) for key, _ in pairs), default=0) + 1
    return "\n".join(f"{key + ':':<{width}} {_cell(value)}".rstrip() for key, value in pairs)


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def decimal_bytes(n: int | float | None) -> str:
    """Sizes given in GB (10^9 bytes), as compose storage is: 10**9 -> "1 GB", 1.5e9 -> "1.5 GB"."""
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f}".removesuffix(".0") + f" {unit}"
        n /= 1000
    return str(n)
