"""Untrusted text made safe to show on one line: in logs, alerts and stored errors.

Headlines, server answers and error reasons come from the network and may hold line
breaks, terminal escapes or bidi overrides that would forge a log line, a header or
the layout of a message. :func:`one_line` is the one way kmon folds such text.
"""

from __future__ import annotations

import re

__all__ = ["CONTROL", "one_line", "reason_of"]

# C0/C1 controls (ESC included), line and paragraph separators, bidi embeddings,
# overrides and isolates.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def one_line(text: str, limit: int | None = None) -> str:
    """``text`` with control characters as spaces and whitespace runs collapsed.

    With ``limit``, the result is at most that many characters and ends in "…" when
    it was cut.
    """
    line = " ".join(CONTROL.sub(" ", text).split())
    if limit is None or len(line) <= limit:
        return line
    return line[: limit - 1].rstrip() + "…"


def reason_of(exc: BaseException | None, limit: int) -> str:
    """A short reason for a low-level error (``strerror``, ``reason``, its text or its
    type name), on one line and at most ``limit`` characters."""
    if exc is None:
        return "unknown error"
    text = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
    return one_line(str(text), limit) or type(exc).__name__
