import os

# No network here: LiteLLM must use its bundled cost map.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

pytest_plugins = ["tests.fixtures.temporal", "tests.fixtures.postgres", "tests.fixtures.worker"]
