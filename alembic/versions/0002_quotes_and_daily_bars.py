"""quotes and daily bars

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "quotes",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("ticker", sa.String(length=16), nullable=False),
        sa.Column("as_of", UTC, nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("prev_close", sa.Float(), nullable=True),
        sa.Column("change", sa.Float(), nullable=True),
        sa.Column("change_pct", sa.Float(), nullable=True),
        sa.Column("open", sa.Float(), nullable=True),
        sa.Column("high", sa.Float(), nullable=True),
        sa.Column("low", sa.Float(), nullable=True),
        sa.Column("volume", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("market_open", sa.Boolean(), nullable=True),
        sa.Column("fetched_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quotes")),
        sa.UniqueConstraint(
            "ticker", "as_of", "source", name=op.f("uq_quotes_ticker_as_of_source")
        ),
    )
    op.create_index("ix_quotes_ticker_as_of", "quotes", ["ticker", "as_of"])
    op.create_table(
        "daily_bars",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("ticker", sa.String(length=16), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("open", sa.Float(), nullable=True),
        sa.Column("high", sa.Float(), nullable=True),
        sa.Column("low", sa.Float(), nullable=True),
        sa.Column("close", sa.Float(), nullable=False),
        sa.Column("volume", sa.BigInteger(), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("fetched_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_daily_bars")),
        sa.UniqueConstraint("ticker", "day", name=op.f("uq_daily_bars_ticker_day")),
    )


def downgrade() -> None:
    op.drop_table("daily_bars")
    op.drop_index("ix_quotes_ticker_as_of", table_name="quotes")
    op.drop_table("quotes")
