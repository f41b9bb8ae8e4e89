"""Request claims: one job (or LLM request) per request id of a tenant, whichever way a workflow
id spells the tenant (by name or by id). Tenant rows under the same row-level security as the
usage ledger; the application role may read, insert and update them (a claim is taken over when
its workflow ended uncharged, and completed when the request is metered).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.app_role import app_role

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT_ID = "NULLIF(current_setting('app.current_tenant_id', true), '')::uuid"


def upgrade() -> None:
    op.create_table(
        "request_claims",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("request_key", sa.Text(), nullable=False),
        sa.Column("workflow_id", sa.Text(), nullable=False),
        sa.Column(
            "claimed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),  # fmt: skip
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_request_claims_tenant_id_tenants"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "request_key", name="pk_request_claims"),
    )
    op.create_index(
        "ix_request_claims_tenant_id_workflow_id", "request_claims", ["tenant_id", "workflow_id"]
    )
    # The usage ledger's policy: only the tenant set for the transaction, even for the owner.
    op.execute("ALTER TABLE request_claims ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE request_claims FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON request_claims "
        f"USING (tenant_id = {TENANT_ID}) WITH CHECK (tenant_id = {TENANT_ID})"
    )
    role, _ = app_role()
    op.execute(f'GRANT SELECT, INSERT, UPDATE ON request_claims TO "{role}"')


def downgrade() -> None:
    # Dropping the table drops its policy, index and the role's privileges on it.
    op.drop_index("ix_request_claims_tenant_id_workflow_id", table_name="request_claims")
    op.drop_table("request_claims")
