"""Rendering rows for the admin CLI as a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

Format = Literal["table", "json", "csv"]
FORMATS: tuple[Format, ...] = ("table", "json", "csv")


def clip(text: str | None, width: int) -> str:
    """Shorten ``text`` to about ``width`` characters for a table cell."""
    if not text:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def render(
    rows: Sequence[Mapping[str, Any]],
    fmt: Format,
    *,
    table_rows: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """``rows`` as JSON or CSV; a table shows ``table_rows`` (shorter cells) if given.

    Tables measure Hangul as two columns wide (tabulate uses wcwidth).
    """
    if fmt == "json":
        return json.dumps(list(rows), ensure_ascii=False, indent=2, default=str)
    if fmt == "csv":
        buffer = io.StringIO()
        if rows:
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0].keys()), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        return buffer.getvalue().rstrip("\n")
    shown = table_rows if table_rows is not None else rows
    if not shown:
        return "(none)"
    from tabulate import tabulate  # on use: it costs more to import than --help takes

    return tabulate(shown, headers="keys", tablefmt="simple", disable_numparse=True)
