# The gateway's production image: `gateway serve` (uvicorn with uvloop and httptools) as UID 10001.
#
#   docker build -t llm-flag-gateway:0.1.0 .
#   docker run --rm -p 8000:8000 \
#     -v "$PWD/config:/etc/gateway:ro" \
#     -e GATEWAY_CLIENT_KEYS='{"my-app": "a-long-random-key"}' \
#     llm-flag-gateway:0.1.0
#
# Settings come from GATEWAY_* variables (README.md, "Configuration"); the routes file is mounted
# at /etc/gateway/gateway.yaml; keys come from the environment or mounted *_FILE files, never from
# the image. The Helm chart in helm/gateway runs it read-only with the same defaults.
# tests/deploy/test_dockerfile.py checks this file (hadolint, COPY sources, the command).

# ---- build: a virtualenv with the dependencies, then the package --------------------------------
FROM python:3.11.14-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
WORKDIR /src

# Dependencies in a layer of their own: rebuilt only when pyproject.toml changes, not on every
# code change. Every dependency ships wheels for linux amd64/arm64, so no compiler is needed.
COPY pyproject.toml ./
RUN python -c 'import tomllib; deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]; print("\n".join(deps))' > /tmp/requirements.txt \
    && /opt/venv/bin/pip install --no-cache-dir --requirement /tmp/requirements.txt

# The package itself, without touching the dependencies installed above.
COPY README.md ./
COPY gateway ./gateway
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps . \
    && /opt/venv/bin/gateway --help > /dev/null

# ---- runtime: the same slim base, the virtualenv, nothing else ----------------------------------
FROM python:3.11.14-slim-bookworm AS runtime

# A fixed UID/GID so that Kubernetes securityContext (runAsUser: 10001) and file ownership agree.
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin gateway \
    && mkdir -p /etc/gateway /var/lib/gateway \
    && chown 10001:10001 /var/lib/gateway

COPY --from=build /opt/venv /opt/venv

# GATEWAY_SHUTDOWN_GRACE_S: after SIGTERM, uvicorn stops accepting and lets in-flight requests
# and streams finish for this long (`gateway serve` passes it as timeout_graceful_shutdown).
# The SQLite flag store needs a writable /var/lib/gateway (a volume); replicas use Redis.
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8000 \
    GATEWAY_WORKERS=1 \
    GATEWAY_CONFIG=/etc/gateway/gateway.yaml \
    GATEWAY_FLAG_STORE=sqlite:////var/lib/gateway/flags.db \
    GATEWAY_SHUTDOWN_GRACE_S=30

WORKDIR /app
USER 10001:10001
EXPOSE 8000
VOLUME ["/var/lib/gateway"]

# No curl in the slim image: the check is Python's urllib (exit 1 on any error or non-2xx).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GATEWAY_PORT', '8000'), timeout=4)"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["gateway"]
CMD ["serve"]
