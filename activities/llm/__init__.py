"""LLM calls through LiteLLM, model selection inputs, provider health and registry sync.

LiteLLM is imported lazily (it takes seconds) and always with its bundled cost map: a worker must
never fetch prices from the network at import time (DESIGN; temporal_python_notes section 0).
"""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
