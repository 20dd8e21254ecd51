"""disclosures: OpenDART filings as items, their companies, the dart sources' state,
and the type of every source

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

A filing is an item of its source (kind dart) with a ``disclosures`` row holding its
structured fields. ``dart_corps`` keeps the corp code of each stock code, looked up
once. A source row gains its cursor (JSON: the newest receipt per company) and the
requests of its daily budget spent on ``budget_day`` (KST), and every source its type
(``news``, or ``government`` for a ministry's own releases), which rules can weigh.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        batch.add_column(sa.Column("cursor", sa.Text(), nullable=True))
        batch.add_column(sa.Column("budget_day", sa.Date(), nullable=True))
        batch.add_column(sa.Column("budget_used", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("source_type", sa.String(16), nullable=False, server_default="news")
        )
    op.create_table(
        "disclosures",
        sa.Column("item_id", BigId, nullable=False),
        sa.Column("rcept_no", sa.String(14), nullable=False),
        sa.Column("corp_code", sa.String(8), nullable=False),
        sa.Column("corp_name", sa.Text(), nullable=False),
        sa.Column("stock_code", sa.String(6), nullable=True),
        sa.Column("corp_cls", sa.String(1), nullable=False),
        sa.Column("report_nm", sa.Text(), nullable=False),
        sa.Column("flr_nm", sa.Text(), nullable=False),
        sa.Column("rcept_dt", sa.Date(), nullable=False),
        sa.Column("flags", sa.String(16), nullable=False),
        sa.Column("correction", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name="fk_disclosures_item_id_items", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("item_id", name="pk_disclosures"),
    )
    op.create_index("ix_disclosures_stock_code_rcept_dt", "disclosures", ["stock_code", "rcept_dt"])
    op.create_index("ix_disclosures_rcept_dt", "disclosures", ["rcept_dt"])
    op.create_table(
        "dart_corps",
        sa.Column("stock_code", sa.String(6), nullable=False),
        sa.Column("corp_code", sa.String(8), nullable=False),
        sa.Column("corp_name", sa.Text(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("stock_code", name="pk_dart_corps"),
    )


def downgrade() -> None:
    op.drop_table("dart_corps")
    op.drop_index("ix_disclosures_rcept_dt", table_name="disclosures")
    op.drop_index("ix_disclosures_stock_code_rcept_dt", table_name="disclosures")
    op.drop_table("disclosures")
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("source_type")
        batch.drop_column("budget_used")
        batch.drop_column("budget_day")
        batch.drop_column("cursor")
