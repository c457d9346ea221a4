# syntax=docker/dockerfile:1
# Multi-stage build: wheels are built in the first stage, the runtime image has no compiler or pip cache.
# tests/packaging/test_docker.py replays the build stage's COPY and RUN steps in a scratch venv and runs
# the HEALTHCHECK command against a live agent (no Docker engine is needed for that).
#
# Supply chain: the base image is pinned by digest (python:3.11-slim, linux/amd64 + arm64 index; bump
# it deliberately: `docker buildx imagetools inspect python:3.11-slim`), and every Python package,
# build backend included, is installed from requirements.lock with --require-hashes (`make lock`
# regenerates it from pyproject.toml); the agent itself is installed without resolving anything.
ARG BASE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7
FROM ${BASE} AS build
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY agent ./agent
RUN python -m venv /opt/siem-agent \
 && /opt/siem-agent/bin/pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock \
 && /opt/siem-agent/bin/pip install --no-cache-dir --no-deps --no-build-isolation . \
 && /opt/siem-agent/bin/siem-agent --version

FROM ${BASE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="siem-agent" \
      org.opencontainers.image.description="Forwards Microsoft Graph security alerts into SIEMs without loss" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.documentation="https://github.com/siem-agent/siem-agent/blob/main/docs/operations.md" \
      org.opencontainers.image.source="https://github.com/siem-agent/siem-agent"
RUN groupadd --system --gid 10001 siem && useradd --system --uid 10001 --gid siem --no-create-home siem \
 && mkdir -p /var/lib/siem-agent && chown siem:siem /var/lib/siem-agent && chmod 0700 /var/lib/siem-agent
COPY --from=build /opt/siem-agent /opt/siem-agent
# Read-only root filesystem (`docker run --read-only`): the agent writes only to the state volume
# (checkpoint, lock, dead letters; temporary files are created next to the checkpoint), Python writes
# no bytecode, and logs go to stderr. TMPDIR points into the volume for anything else.
# /metrics and /readyz listen on all interfaces *inside* the container (publish the port to expose it).
ENV PATH=/opt/siem-agent/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/var/lib/siem-agent \
    SIEM_AGENT_STATE_DIR=/var/lib/siem-agent \
    SIEM_AGENT_HTTP__ADDRESS=0.0.0.0 \
    SIEM_AGENT_HTTP__PORT=9464
USER 10001:10001
VOLUME ["/var/lib/siem-agent"]
EXPOSE 9464
# Liveness via /healthz with the image's own Python (slim has no curl); follows SIEM_AGENT_HTTP__PORT.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SIEM_AGENT_HTTP__PORT', '9464'), timeout=4)"]
# The agent is PID 1 (exec form, no shell): it handles SIGTERM itself and drains before exiting;
# give `docker stop -t` more than shutdown_timeout_secs (default 30).
STOPSIGNAL SIGTERM
ENTRYPOINT ["siem-agent"]
CMD ["run", "--config", "/etc/siem-agent/agent.toml"]
