"""Text made safe to show: one definition of the characters no message may carry.

The definitions live in :mod:`adapters.text`, since adapters clean the error reasons
they raise with them and may not import ``monitor``; this leaf names them for the core.
"""

from __future__ import annotations

from adapters.text import CONTROL, one_line, reason_of

__all__ = ["CONTROL", "one_line", "reason_of"]
