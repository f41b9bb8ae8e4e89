"""Order of thermal records (thermal_states.record_at, record_seq) and an index for scoped
watches (notifications by app, environment, id).

`thermal.record` mirrors a thermal workflow's state. Temporal retries an attempt that outlived
its timeout while the first attempt may still be running: a late attempt of an older record
must not overwrite a newer one (nor reopen an uptime interval the newer one closed). Each record
carries the workflow's clock (`workflow.now()`, later across continue-as-new and for a new
workflow under the same id) and its sequence number; a record not newer than the row's is
skipped. NULL: written before this revision (or by a workflow task scheduled before it), and
any record replaces it. The application role's table-level grants cover the new columns.

`radiant watch --app/--env` reads the latest notifications of one (app, environment), newest
first: ix_notifications_app_environment_id serves it without a scan of the whole outbox.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("thermal_states", sa.Column("record_at", sa.DateTime(timezone=True)))
    op.add_column("thermal_states", sa.Column("record_seq", sa.BigInteger()))
    op.create_index(
        "ix_notifications_app_environment_id", "notifications", ["app_id", "environment", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_notifications_app_environment_id", table_name="notifications")
    op.drop_column("thermal_states", "record_seq")
    op.drop_column("thermal_states", "record_at")
