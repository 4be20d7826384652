"""Add precomputed_reports.pdf_s3_key (expand only: nullable, so code without it still works).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "precomputed_reports",
        sa.Column("pdf_s3_key", sa.String(512), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("precomputed_reports", "pdf_s3_key")
