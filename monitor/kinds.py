"""The kinds of signal, defined once: the rules raise them, routes select them, the
CLI filters by them."""

from __future__ import annotations

from typing import Literal, get_args

SignalKind = Literal[
    "news", "move", "policy_move", "source_stale", "source_auth", "disclosure", "disclosure_move"
]
SIGNAL_KINDS: tuple[SignalKind, ...] = get_args(SignalKind)
