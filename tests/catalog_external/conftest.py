"""A small, valid external catalog document that tests break one rule at a time.

Synthetic providers and models (acme, pixo): the real data is tested as loaded from
models_catalog/data, never copied here.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

BASE_DOC: dict[str, Any] = {
    "version": 1,
    "markup": "0.40",
    "providers": [
        {
            "id": "acme",
            "display_name": "Acme",
            "category": "text_generation",
            "litellm_provider": "openai",
            "api_key_env": "ACME_API_KEY",
            "compliance": ["SOC2", "HIPAA"],
        },
        {
            "id": "pixo",
            "display_name": "Pixo",
            "category": "image_generation",
            "litellm_provider": None,
            "api_key_env": "PIXO_API_KEY",
        },
    ],
    "models": [
        {
            "id": "acme-chat",
            "provider_id": "acme",
            "model_id": "chat-1",
            "litellm_id": "openai/chat-1",
            "aliases": ["chat"],
            "display_name": "Acme Chat",
            "category": "text_generation",
            "capabilities": ["chat", "function_calling", "streaming"],
            "input_modalities": ["text"],
            "output_modalities": ["text"],
            "pricing": {
                "type": "per_token",
                "input_per_1k": "0.002",
                "output_per_1k": "0.008",
                "cached_input_per_1k": "0.0005",
            },
        },
        {
            "id": "acme-chat-mini",
            "provider_id": "acme",
            "model_id": "chat-mini",
            "litellm_id": "openai/chat-mini",
            "display_name": "Acme Chat Mini",
            "category": "text_generation",
            "capabilities": ["chat"],
            "input_modalities": ["text"],
            "output_modalities": ["text"],
            "pricing": {"type": "per_token", "input_per_1k": "0.0001", "output_per_1k": "0.0004"},
        },
        {
            "id": "acme-search",
            "provider_id": "acme",
            "model_id": "search",
            "litellm_id": "openai/search",
            "display_name": "Acme Search",
            "category": "search",
            "capabilities": ["chat", "search"],
            "input_modalities": ["text"],
            "output_modalities": ["text"],
            "pricing": {
                "type": "per_token",
                "input_per_1k": "0.001",
                "output_per_1k": "0.001",
                "per_request": "0.005",
            },
        },
        {
            "id": "pixo-image",
            "provider_id": "pixo",
            "model_id": "img-1",
            "litellm_id": "pixo/img-1",
            "display_name": "Pixo Image",
            "category": "image_generation",
            "input_modalities": ["text"],
            "output_modalities": ["image"],
            "pricing": {"type": "per_image", "per_image": "0.04"},
        },
        {
            "id": "pixo-voice",
            "provider_id": "pixo",
            "model_id": "voice-1",
            "litellm_id": "pixo/voice-1",
            "display_name": "Pixo Voice",
            "category": "text_to_speech",
            "input_modalities": ["text"],
            "output_modalities": ["audio"],
            "pricing": {"type": "per_token", "input_per_1k": "0.015", "input_unit": "characters"},
        },
    ],
    "fallbacks": {"acme-chat": ["acme-chat-mini"]},
}


@pytest.fixture
def doc() -> dict[str, Any]:
    """A fresh deep copy of the valid document, to break."""
    return copy.deepcopy(BASE_DOC)


@pytest.fixture
def write(tmp_path: Path):
    """write(doc_or_text) -> the directory holding external.yaml."""

    def _write(content: dict[str, Any] | str) -> Path:
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        (tmp_path / "external.yaml").write_text(text, encoding="utf-8")
        return tmp_path

    return _write
