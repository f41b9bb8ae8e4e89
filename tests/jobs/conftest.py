"""Shared by the job tests: two tenants, tier 5 and tier 3."""

from __future__ import annotations

import uuid

import pytest_asyncio

from activities.tenants import create_tenant


@pytest_asyncio.fixture(scope="session")
async def tenants(catalog_db):
    suffix = uuid.uuid4().hex[:6]
    big = create_tenant(catalog_db.owner_url, f"acme-{suffix}", 5)
    small = create_tenant(catalog_db.owner_url, f"small-{suffix}", 3)
    return big, small
