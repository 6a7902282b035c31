# syntax=docker/dockerfile:1
# The Pocho realtime server, production image. Build: docker build -t pocho-rt .
# It talks to real PostgreSQL and Redis (DATABASE_URL, REDIS_URL: see docker-compose.yml).
# The embedded servers that `make run` / `make test` use (the `embedded` extra) are not in
# it: started without DATABASE_URL or REDIS_URL, it exits with a message saying so.

# Build stage: wheels of the package and of its runtime dependencies, no extras.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml ./
COPY pocho_rt ./pocho_rt
COPY engine ./engine
COPY persistence ./persistence
COPY adapters ./adapters
RUN pip wheel --wheel-dir /wheels .

# Runtime stage: those wheels only (no compiler, no sources, no embedded servers), non-root.
FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels pocho-rt \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin pocho
WORKDIR /app
USER pocho
ENV PORT=8080 POCHO_ENV=production
EXPOSE 8080
# `docker run IMAGE` serves; other commands run the same binary: `docker run IMAGE migrate`,
# `docker compose run --rm app create-admin --phone ...`.
ENTRYPOINT ["pocho-rt"]
CMD ["serve", "--migrate"]
