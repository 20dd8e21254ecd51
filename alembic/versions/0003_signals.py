"""signals and the items behind them

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "signals",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("tickers", sa.String(length=255), nullable=False),
        sa.Column("headline", sa.Text(), nullable=False),
        sa.Column("event_time", UTC, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("dedup_key", sa.String(length=255), nullable=False),
        sa.Column("explanation", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signals")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_signals_dedup_key")),
    )
    op.create_index("ix_signals_event_time", "signals", ["event_time"])
    op.create_index("ix_signals_kind_event_time", "signals", ["kind", "event_time"])
    op.create_index("ix_signals_created_at", "signals", ["created_at"])
    op.create_table(
        "signal_items",
        sa.Column("signal_id", BigId, nullable=False),
        sa.Column("item_id", BigId, nullable=False),
        sa.Column("attached_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["signal_id"],
            ["signals.id"],
            name=op.f("fk_signal_items_signal_id_signals"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["items.id"],
            name=op.f("fk_signal_items_item_id_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("signal_id", "item_id", name=op.f("pk_signal_items")),
    )
    op.create_index("ix_signal_items_item_id", "signal_items", ["item_id"])


def downgrade() -> None:
    op.drop_index("ix_signal_items_item_id", table_name="signal_items")
    op.drop_table("signal_items")
    op.drop_index("ix_signals_created_at", table_name="signals")
    op.drop_index("ix_signals_kind_event_time", table_name="signals")
    op.drop_index("ix_signals_event_time", table_name="signals")
    op.drop_table("signals")
