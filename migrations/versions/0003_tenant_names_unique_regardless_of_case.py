"""Tenant names unique regardless of case: a unique index on lower(name).

Until 0002 only the application checked this (under an advisory lock, in `create_tenant`);
a tenant inserted by hand, or by an older release, could still sit beside another spelled in
another case. The upgrade refuses, naming them, while such pairs exist: which one to rename is
the owner's decision, not the migration's.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_tenants_lower_name"


def upgrade() -> None:
    clashes = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT string_agg(quote_literal(name), ' and ' ORDER BY name) FROM tenants "
                "GROUP BY lower(name) HAVING count(*) > 1 ORDER BY lower(name)"
            )
        )
        .scalars()
        .all()
    )
    if clashes:
        raise CommandError(
            "tenant names must be unique regardless of case, but "
            + "; ".join(clashes)
            + " differ only in case: rename all but one (UPDATE tenants SET name = ... "
            "WHERE id = ...) as the database owner, then upgrade again"
        )
    op.create_index(INDEX, "tenants", [sa.literal_column("lower(name)")], unique=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="tenants")
