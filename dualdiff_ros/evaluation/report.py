"""Result tables in markdown: one helper for every study, so every table reads the same."""
from __future__ import annotations


def cell(value, digits: int = 3) -> str:
    """(mean, sd) as 'mean ± sd', a float with `digits`, anything else as text; missing = blank."""
    if value is None:
        return ""
    if isinstance(value, dict) and {"mean", "sd"} <= set(value):
        value = (value["mean"], value["sd"])
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return f"{value[0]:.{digits}f} ± {value[1]:.{digits}f}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: list[dict], columns: list[str], headers: list[str] | None = None,
                   digits: dict | None = None) -> str:
    """One line per row, one column per key (a missing key is a blank cell)."""
    digits = digits or {}
    lines = ["| " + " | ".join(headers or columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(cell(row.get(c), digits.get(c, 3)) for c in columns) + " |")
    return "\n".join(lines) + "\n"
