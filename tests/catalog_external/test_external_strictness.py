"""external.yaml refuses a fallback LiteLLM cannot call and duplicate keys; its YAML errors are
one line."""

from __future__ import annotations

from typing import Any

import pytest

from models_catalog.external import ExternalCatalogError, load_external


def _problems(write, doc: dict[str, Any] | str) -> list[str]:
    with pytest.raises(ExternalCatalogError) as info:
        load_external(write(doc))
    return info.value.problems


def test_fallback_to_a_model_litellm_cannot_call(write, doc):
    # pixo has no LiteLLM adapter: a router fallback to its model can never be tried.
    doc["models"].append(
        {
            **doc["models"][1],
            "id": "pixo-chat",
            "provider_id": "pixo",
            "model_id": "pchat",
            "litellm_id": "pixo/pchat",
        }
    )
    doc["fallbacks"]["acme-chat"] = ["pixo-chat"]
    problems = _problems(write, doc)
    assert any(
        "fallbacks[acme-chat]" in p and "'pixo-chat'" in p and "no LiteLLM adapter" in p
        for p in problems
    ), problems


def test_duplicate_model_key_is_an_error(write):
    text = "version: 1\nmarkup: '0.40'\nmarkup: '0.10'\nproviders: []\nmodels: []\n"
    problems = _problems(write, text)
    assert len(problems) == 1 and "duplicate key 'markup'" in problems[0], problems
    assert "line 3" in problems[0] and "\n" not in problems[0]
