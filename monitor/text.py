"""Text made safe to show: one definition of the characters no message may carry."""

from __future__ import annotations

import re

# C0/C1 controls (ESC, CR and LF included), line and paragraph separators, bidi
# embeddings, overrides and isolates: they can break a line, a header or what a
# reader sees.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def one_line(text: str) -> str:
    """``text`` on one line: controls become spaces, runs of spaces one space."""
    return " ".join(CONTROL.sub(" ", text).split())
