"""Prompt-cache write rates of external models: models.cache_write_input_cost_per_1k and
models.cache_write_1h_input_cost_per_1k.

Anthropic bills prompt-cache writes (LiteLLM's `cache_creation_input_tokens`) at their own rate,
beside cache reads (`cached_input_cost_per_1k`), and writes to its 1-hour cache at another.
Provider cost per 1K tokens, like the other rates; NULL: the model bills cache writes at its
input rate (1-hour writes: at its cache write rate). Existing rows stay NULL until the
next `radiant catalog sync` fills them from the catalog (billing reads the catalog itself, never
this column). The application role's table-level SELECT covers the new columns.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("cache_write_input_cost_per_1k", "cache_write_1h_input_cost_per_1k")


def upgrade() -> None:
    for column in COLUMNS:
        op.add_column("models", sa.Column(column, sa.Numeric(20, 10), nullable=True))


def downgrade() -> None:
    for column in reversed(COLUMNS):
        op.drop_column("models", column)
