# syntax=docker/dockerfile:1
# RADIANT Orchestrator image: the `radiant` CLI (worker, migrations, catalog) on python:3.11-slim.
#   docker build -t radiant-orchestrator .
#   docker run --rm radiant-orchestrator --help
# Used by docker-compose.yml (services `migrate` and `worker`); see docs/compose.md.

ARG PYTHON_VERSION=3.11

# ---- build: wheels for the dependencies (cached until pyproject.toml changes), then the project
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip wheel --wheel-dir /wheels -r /tmp/requirements.txt
COPY . .
RUN pip wheel --no-deps --wheel-dir /wheels .

# ---- runtime: installed from the wheels only, no compilers, no source tree, non-root
FROM python:${PYTHON_VERSION}-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    RADIANT_DATA_DIR=/var/lib/radiant
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels radiant-orchestrator
RUN groupadd --system --gid 10001 radiant \
 && useradd --system --uid 10001 --gid radiant --home-dir /home/radiant --create-home radiant \
 && install -d -o radiant -g radiant /var/lib/radiant
WORKDIR /home/radiant
USER 10001:10001
ENTRYPOINT ["radiant"]
CMD ["worker"]
