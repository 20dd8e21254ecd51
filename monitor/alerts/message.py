"""What a channel is given to send, and what it answers.

A channel never reads the database: the dispatcher turns delivery rows into one
:class:`AlertMessage` (one or several signals, grouped) and hands it over. Every text
field that came from a feed (``title``, ``url``, ``source``, matched terms) is
untrusted: each channel escapes it for its own format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urlsplit

from monitor.timefmt import KST


def web_url(url: str | None) -> str | None:
    """``url`` stripped when it is an absolute http(s) URL with a host, else None.

    The one test of what a channel may link: ``javascript:``, ``data:``, relative and
    malformed URLs are shown as text at most, never linked.
    """
    if not url:
        return None
    candidate = url.strip()
    try:
        parts = urlsplit(candidate)
        has_host = bool(parts.hostname)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not has_host:
        return None
    return candidate


def event_time_text(value: datetime) -> str:
    """``2025-06-18 09:30 KST``: an event time as every channel shows it (naive is UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(KST).strftime("%Y-%m-%d %H:%M KST")


@dataclass(frozen=True)
class MoveLine:
    """A ticker's move, as a message shows it."""

    ticker: str
    name: str | None
    price: float | None
    change_pct: float | None


@dataclass(frozen=True)
class AlertSignal:
    """One signal as a message shows it.

    ``title``: the headline of a news item, or a one-line summary the rules wrote
    (moves, stale sources). ``url``: the item's link, if any (only http(s) is linked).
    ``terms``: the matched terms, as they appeared in the text. ``story``: the story
    cluster (news), used to thread email updates of one story.
    """

    id: int
    kind: str  # news | move | policy_move | source_stale | source_auth
    rule_id: str
    severity: str  # info | warning | critical
    subject: str
    title: str
    event_time: datetime
    url: str | None = None
    source: str | None = None
    move: MoveLine | None = None
    terms: tuple[str, ...] = ()
    why: str = ""
    story: str | None = None


@dataclass(frozen=True)
class ChartImage:
    """A chart drawn for a message (:mod:`monitor.alerts.charting`): the PNG of one
    ticker, for the signal ``signal_id``; ``caption`` says in words what it shows,
    for readers that show no images."""

    signal_id: int
    ticker: str
    png: bytes
    caption: str

    @property
    def filename(self) -> str:
        return f"kmon-{self.ticker}-{self.signal_id}.png"


@dataclass(frozen=True)
class AlertMessage:
    """One message to send: signals grouped by a route for a channel.

    ``folded``: signals a throttle held back and counted into this message, beyond
    the ones listed. ``digest``: the message gathers signals held for quiet hours or
    a daily digest. ``key``: a stable id for the message (the dispatcher derives it
    from its delivery rows), used as the email Message-ID so a resend after a crash
    is recognisably the same message. ``charts``: drawn by the dispatcher for channels
    that show them (one per ticker of the move signals); a message reads whole
    without them.
    """

    key: str
    route: str
    signals: tuple[AlertSignal, ...]
    folded: int = 0
    digest: bool = False
    test: bool = False
    created_at: datetime | None = None
    charts: tuple[ChartImage, ...] = ()


def move_figures(move: MoveLine) -> list[str]:
    """The price and the arrowed change of a move, as far as they are known:
    ``["2,345.26", "▲ +1.20%"]``."""
    figures: list[str] = []
    if move.price is not None:
        price = move.price
        figures.append(f"{price:,.0f}" if float(price).is_integer() else f"{price:,.2f}")
    if move.change_pct is not None:
        arrow = "▲" if move.change_pct > 0 else "▼" if move.change_pct < 0 else "–"
        figures.append(f"{arrow} {move.change_pct:+.2f}%")
    return figures


def message_notes(message: AlertMessage) -> list[str]:
    """What a channel adds below the signals: throttle folding, digest, test."""
    notes: list[str] = []
    if message.folded > 0:
        notes.append(f"+{message.folded} more folded in by the throttle (kmon signals list)")
    if message.digest:
        notes.append("Digest of signals held for quiet hours or the daily summary")
    if message.test:
        notes.append("Test message from kmon: no action needed")
    return notes


@dataclass(frozen=True)
class Sent:
    """A channel's answer to a successful send: what the server said.
    ``image_failures``: charts that could not go with it (the text went out)."""

    detail: str
    extra: dict[str, str] = field(default_factory=dict)
    image_failures: int = 0


class Channel(Protocol):
    """A way to send messages. ``send`` raises :class:`adapters.errors.TransientError`
    (retry; ``retry_after`` when the server said when) or
    :class:`adapters.errors.PermanentError` (dead-letter) on failure.

    A channel that shows charts has a true ``shows_charts`` attribute (read with
    :func:`shows_charts`; channels without it are given none)."""

    name: str

    async def send(self, message: AlertMessage) -> Sent: ...

    async def close(self) -> None: ...


def shows_charts(channel: Channel) -> bool:
    """Whether ``channel`` wants :attr:`AlertMessage.charts` drawn for it."""
    return bool(getattr(channel, "shows_charts", False))
