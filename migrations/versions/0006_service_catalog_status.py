"""Catalog status of mid-level services (mid_level_services.status).

`radiant catalog sync` never deletes a row the catalog no longer has (service_states refer to
it, and the usage ledger names it): it marks self-hosted and external models
`status = 'deprecated'` and providers `enabled = false`, but a service gone from the catalog
stayed in mid_level_services looking current. Services now get the same status: 'active' while
the catalog has them, 'deprecated' once it drops them (and 'active' again when it brings them
back). Rows of before are all 'active' (the next sync marks the ones gone). The application
role's table-level grants cover the new column.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "mid_level_services",
        sa.Column("status", sa.Text(), server_default=sa.text("'active'"), nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_mid_level_services_status_valid"),
        "mid_level_services",
        "status IN ('active', 'deprecated')",
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("ck_mid_level_services_status_valid"), "mid_level_services", type_="check"
    )
    op.drop_column("mid_level_services", "status")
