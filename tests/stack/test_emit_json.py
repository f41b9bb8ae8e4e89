"""`--json` output: times in ISO 8601 whatever carries them (a model or a plain row)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from workers.cli.common import emit_json


def test_plain_rows_write_times_as_pydantic_models_do(capsys):
    at = datetime(2026, 12, 3, 14, 35, 0, 383049, tzinfo=UTC)
    emit_json([{"at": at, "took": timedelta(seconds=90), "amount": Decimal("1.50")}])
    [row] = json.loads(capsys.readouterr().out)
    assert row == {"at": "2026-12-03T14:35:00.383049Z", "took": "PT1M30S", "amount": "1.50"}
