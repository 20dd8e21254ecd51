"""JSON answers of quote APIs, which serve their error pages as HTML with status 200."""

from __future__ import annotations

import json
import re
from typing import Any

from adapters.errors import ParseError

__all__ = ["load_json"]

_LEADING = re.compile(r"^[\s\ufeff]+")


def load_json(text: str, *, error_key: str, expected: str) -> Any:
    """The JSON document in a decoded body.

    Raises ``ParseError(error_key)`` for an empty body, an HTML page ("an HTML page,
    not {expected}") and text that is not JSON.
    """
    stripped = _LEADING.sub("", text)
    if not stripped:
        raise ParseError(error_key, "empty body")
    if stripped.startswith("<"):
        raise ParseError(error_key, f"an HTML page, not {expected}")
    try:
        return json.loads(stripped)
    except (ValueError, RecursionError) as exc:
        raise ParseError(error_key, f"not JSON ({type(exc).__name__})") from exc
