"""The CSV reader of the project's tables (observation samples, station positions): a header line names the columns
in any order (extra columns are ignored), then one row per line; blank lines are skipped. Every fault raises a
``ValueError`` naming the file, the line and the column.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path


def read_table(path: Path, kind: str, columns: tuple[str, ...], optional: tuple[str, ...] = (),
               rows: str = "samples", row: str | None = None) -> list[tuple[int, dict[str, str]]]:
    """The rows of a CSV table: ``(line number, {column: cell with spaces stripped})`` for ``columns`` and those of
    ``optional`` the header names.

    Args:
        path: The file (checked to exist by the caller, whose message names what the file is for).
        kind: What the file is, to start messages, e.g. ``observation file``.
        columns: The columns the header must name.
        optional: Columns read when the header names them.
        rows: What the lines after the header hold, for the message about an empty file.
        row: What a line holds, for the message about a line without values; None lists ``columns``.
    """
    # utf-8-sig: spreadsheet programs start CSV files with a byte-order mark that would otherwise glue onto the
    # first column's name
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        # (line number, fields); blank lines carry no row, but a row of bare commas is a row without values
        lines = [(reader.line_num, r) for r in reader if len(r) > 1 or (r and r[0].strip())]
    if not lines:
        raise ValueError(f"{kind} {path} is empty; it needs a header line '{','.join(columns)}' and {rows}.")
    header = [cell.strip() for cell in lines[0][1]]
    missing = [c for c in columns if c not in header]
    if missing:
        names = ", ".join(columns) + (f" (and optionally {', '.join(optional)})" if optional else "")
        raise ValueError(f"{kind} {path}: missing column {missing[0]!r} in the header {header}; the first line must "
                         f"name the columns {names}.")
    index = {c: header.index(c) for c in (*columns, *optional) if c in header}
    table = []
    for line, fields in lines[1:]:
        if not any(cell.strip() for cell in fields):
            raise ValueError(f"{kind} {path}: line {line} has no values; fill in {row or ', '.join(columns)} or "
                             "delete it.")
        if len(fields) != len(header):
            raise ValueError(f"{kind} {path}: line {line} has {len(fields)} fields, the header has {len(header)}.")
        table.append((line, {c: fields[i].strip() for c, i in index.items()}))
    return table


def finite(cell: str, path: Path, kind: str, line: int, column: str) -> float:
    """The number a cell holds; a ValueError naming the file, line and column when it is not a finite number."""
    try:
        value = float(cell)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"{kind} {path}: line {line}, column {column!r}: {cell!r} is not a finite number.")
    return value
