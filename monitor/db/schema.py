"""Tables. The Alembic migrations are the truth; these mirror them for queries."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import JSON, TypeDecorator

# Stable constraint names on every dialect, so migrations can name what they alter.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a bigint.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python on every dialect.

    PostgreSQL keeps ``timestamptz``; SQLite has no zone, so values go in as naive
    UTC and come back marked UTC. Naive input is refused: it is always a bug.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Source(Base):
    """A configured feed and its polling state."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    interval_seconds: Mapped[float] = mapped_column(Float)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # ok | failing (transient, backing off) | failed (permanent: gone, refused)
    status: Mapped[str] = mapped_column(String(16), default="new")
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(Text)
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # dart sources: the newest receipt per company (JSON), and the requests spent on
    # budget_day (KST) against the source's daily budget.
    cursor: Mapped[str | None] = mapped_column(Text)
    budget_day: Mapped[date | None] = mapped_column(Date)
    budget_used: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # news, or government: a ministry's or the government portal's own releases.
    source_type: Mapped[str] = mapped_column(String(16), default="news", server_default="news")
    # The replica polling the source now, and until when its claim holds (the
    # database's clock); both empty between polls (monitor/db/leases.py).
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Item(Base):
    """A news entry, stored once per source and identity."""

    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("source_id", "external_id"),
        Index("ix_items_published_at", "published_at"),
        Index("ix_items_source_id_published_at", "source_id", "published_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    # "g:<guid>", "l:<canonical link>" or "h:<sha256 of the text>"
    external_id: Mapped[str] = mapped_column(String(512))
    url: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(16))
    published_at: Mapped[datetime] = mapped_column(UTCDateTime)
    date_estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DisclosureRow(Base):
    """The structured fields of an item that is an OpenDART filing."""

    __tablename__ = "disclosures"
    __table_args__ = (
        Index("ix_disclosures_stock_code_rcept_dt", "stock_code", "rcept_dt"),
        Index("ix_disclosures_rcept_dt", "rcept_dt"),
    )

    item_id: Mapped[int] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    rcept_no: Mapped[str] = mapped_column(String(14))
    corp_code: Mapped[str] = mapped_column(String(8))
    corp_name: Mapped[str] = mapped_column(Text)
    stock_code: Mapped[str | None] = mapped_column(String(6))
    corp_cls: Mapped[str] = mapped_column(String(1))
    report_nm: Mapped[str] = mapped_column(Text)
    flr_nm: Mapped[str] = mapped_column(Text)
    rcept_dt: Mapped[date] = mapped_column(Date)
    flags: Mapped[str] = mapped_column(String(16))
    correction: Mapped[bool] = mapped_column(Boolean)


class DartCorp(Base):
    """The DART company of a stock code, looked up once from the corp-code file."""

    __tablename__ = "dart_corps"

    stock_code: Mapped[str] = mapped_column(String(6), primary_key=True)
    corp_code: Mapped[str] = mapped_column(String(8))
    corp_name: Mapped[str] = mapped_column(Text)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)


class QuoteRow(Base):
    """A ticker snapshot, stored once per (ticker, as-of time, source)."""

    __tablename__ = "quotes"
    __table_args__ = (
        UniqueConstraint("ticker", "as_of", "source"),
        Index("ix_quotes_ticker_as_of", "ticker", "as_of"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ticker: Mapped[str] = mapped_column(String(16))
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(32))
    price: Mapped[float] = mapped_column(Float)
    prev_close: Mapped[float | None] = mapped_column(Float)
    change: Mapped[float | None] = mapped_column(Float)
    change_pct: Mapped[float | None] = mapped_column(Float)
    open: Mapped[float | None] = mapped_column(Float)
    high: Mapped[float | None] = mapped_column(Float)
    low: Mapped[float | None] = mapped_column(Float)
    volume: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    market_open: Mapped[bool | None] = mapped_column(Boolean)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DailyBarRow(Base):
    """One trading day of a ticker; refreshed daily, so the latest source wins."""

    __tablename__ = "daily_bars"
    __table_args__ = (UniqueConstraint("ticker", "day"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ticker: Mapped[str] = mapped_column(String(16))
    day: Mapped[date] = mapped_column(Date)
    open: Mapped[float | None] = mapped_column(Float)
    high: Mapped[float | None] = mapped_column(Float)
    low: Mapped[float | None] = mapped_column(Float)
    close: Mapped[float] = mapped_column(Float)
    volume: Mapped[int | None] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(32))
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SignalRow(Base):
    """A conclusion of the rules, stored once: ``dedup_key`` is unique.

    ``tickers`` is a space-delimited list with a space at each end (`` 035420 035720 ``)
    so that one ``LIKE '% 035420 %'`` finds a ticker on both databases; ``headline`` is
    the one line a listing shows; ``explanation`` holds the evidence (JSON).
    """

    __tablename__ = "signals"
    __table_args__ = (
        Index("ix_signals_event_time", "event_time"),
        Index("ix_signals_kind_event_time", "kind", "event_time"),
        Index("ix_signals_created_at", "created_at"),
        # The count by kind and rule behind kmon_signals_total reads this index alone.
        Index("ix_signals_kind_rule_id", "kind", "rule_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    rule_id: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(64))
    tickers: Mapped[str] = mapped_column(String(255))
    headline: Mapped[str] = mapped_column(Text)
    event_time: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    dedup_key: Mapped[str] = mapped_column(String(255), unique=True)
    explanation: Mapped[dict[str, object]] = mapped_column(JSON)


class SignalItem(Base):
    """The items behind a news signal: the first copy of the story and later ones."""

    __tablename__ = "signal_items"
    __table_args__ = (
        PrimaryKeyConstraint("signal_id", "item_id"),
        Index("ix_signal_items_item_id", "item_id"),
    )

    signal_id: Mapped[int] = mapped_column(ForeignKey("signals.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    attached_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Delivery(Base):
    """The outbox: one row per signal × channel, written with the signal.

    ``status``: ``pending`` (waiting for ``due_at``; claimed while ``claimed_until`` is
    in the future), ``sent``, ``dead`` (a permanent failure or too many attempts; the
    reason in ``last_error``) or ``suppressed`` (a repeat, never sent). ``due_at`` is
    the earliest send time: the group wait, a throttle window's end, the end of quiet
    hours, the digest time or a retry's backoff. ``claimed_until`` is a lease: a row
    whose lease ran out (the process died between sending and marking) is claimed
    again, which is the one resend the design allows. ``held`` says why a row waited
    (``quiet``, ``digest``, ``throttle``), so a message can say it is a digest.
    ``message_key`` names the batch a row was sent in; ``response`` is the server's
    answer, truncated. ``(signal_id, channel)`` is unique: a signal reaches a channel
    at most once, however many routes match it.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("signal_id", "channel"),
        Index("ix_deliveries_status_due_at", "status", "due_at"),
        Index("ix_deliveries_created_at", "created_at"),
        Index("ix_deliveries_route_channel_sent_at", "route", "channel", "sent_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    signal_id: Mapped[int] = mapped_column(ForeignKey("signals.id", ondelete="CASCADE"))
    route: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    held: Mapped[str | None] = mapped_column(String(16))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message_key: Mapped[str | None] = mapped_column(String(64))
    response: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TaskLease(Base):
    """A timed task that one replica runs at a time: the quote cycle, the daily bars.

    ``lease_owner``/``lease_until``: the replica running it now, until when (the
    database's clock); ``next_run_at``: when it is due next, set by the run that did it.
    """

    __tablename__ = "task_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_owner: Mapped[str | None] = mapped_column(String(64))


class ReplicaRow(Base):
    """A process running the daemon on this database, and its last heartbeat."""

    __tablename__ = "replicas"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
