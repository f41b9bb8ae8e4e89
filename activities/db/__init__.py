"""PostgreSQL access: schema (SQLAlchemy Core), engines, the embedded server, migrations and
tenant-scoped transactions. See each module's docstring."""

from activities.db.engine import (
    DatabaseUrls,
    check_database,
    check_database_async,
    create_app_engine,
    create_sync_engine,
    libpq_conninfo,
    mask_url,
    normalize_url,
    resolve_database_urls,
)
from activities.db.errors import (
    DatabaseError,
    DatabaseUnavailableError,
    EmbeddedPostgresError,
    InvalidDatabaseUrlError,
)
from activities.db.registry import set_registry_scope, set_registry_scope_sync
from activities.db.tenancy import tenant_transaction, tenant_transaction_sync

__all__ = [
    "DatabaseError",
    "DatabaseUnavailableError",
    "DatabaseUrls",
    "EmbeddedPostgresError",
    "InvalidDatabaseUrlError",
    "check_database",
    "check_database_async",
    "create_app_engine",
    "create_sync_engine",
    "libpq_conninfo",
    "mask_url",
    "normalize_url",
    "resolve_database_urls",
    "set_registry_scope",
    "set_registry_scope_sync",
    "tenant_transaction",
    "tenant_transaction_sync",
]
