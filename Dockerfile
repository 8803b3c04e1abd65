# The hybridq image: one image for every process (api, worker, reconcile, migrate); the
# subcommand comes from the container's arguments (compose `command:`, Kubernetes `args:`).
#
#   docker build -t hybridq .
#   docker run --rm -e DATABASE_URL=... -e REDIS_URL=... -e HYBRIDQ_HANDLERS_MODULE=handlers \
#       hybridq worker --concurrency 20

# Build stage: install the project and its dependencies into a virtualenv. Every runtime
# dependency (asyncpg, hiredis, uvloop, httptools) ships manylinux wheels, so no compiler.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Only what the package is built from (pyproject's packages and package-dir + its readme);
# tests, bench and docs stay out of the image.
COPY pyproject.toml README.md ./
COPY queue_core ./queue_core
COPY api ./api
COPY migrations ./migrations
# A regular (non-editable) install: migrations, SQL and Lua ship as package data, so the
# installed `hybridq migrate` finds them without the source tree. The wheel holds only
# queue_core and hybridq_api (the repository's api/).
RUN pip install .

# Runtime stage: the virtualenv only, run as an unprivileged user.
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# A numeric uid/gid so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 hybridq \
    && useradd --system --uid 10001 --gid hybridq --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin hybridq
COPY --from=build /opt/venv /opt/venv
# Settings reads a .env from the working directory when one exists; this one has none
# (.dockerignore keeps a developer's .env out of the build context).
WORKDIR /app
# The application's handlers: here the repository's examples, imported from the working
# directory. Name them with HYBRIDQ_HANDLERS_MODULE=handlers (compose.yaml, the ConfigMap of
# docs/deploy.md) or `--handlers handlers`: worker, reconcile and api require one.
COPY handlers ./handlers
USER 10001:10001
# 8000: `hybridq api --port 8000`; 9100: `hybridq worker --metrics-port 9100`.
EXPOSE 8000 9100
# No CMD: a container started without a subcommand prints hybridq's usage (every command)
# and exits 2 instead of silently starting some default process.
ENTRYPOINT ["hybridq"]
