# syntax=docker/dockerfile:1
# Multi-stage build: wheels are built in the first stage, the runtime image has no compiler or pip cache.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY agent ./agent
RUN python -m venv /opt/siem-agent \
 && /opt/siem-agent/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/siem-agent/bin/pip install --no-cache-dir . \
 && /opt/siem-agent/bin/siem-agent --version

FROM python:3.11-slim
LABEL org.opencontainers.image.title="siem-agent" \
      org.opencontainers.image.description="Forwards Microsoft Graph security alerts into SIEMs without loss" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/siem-agent/siem-agent"
RUN groupadd --system --gid 10001 siem && useradd --system --uid 10001 --gid siem --no-create-home siem \
 && mkdir -p /var/lib/siem-agent && chown siem:siem /var/lib/siem-agent && chmod 0700 /var/lib/siem-agent
COPY --from=build /opt/siem-agent /opt/siem-agent
ENV PATH=/opt/siem-agent/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SIEM_AGENT_STATE_DIR=/var/lib/siem-agent
USER 10001:10001
VOLUME ["/var/lib/siem-agent"]
# The agent is PID 1 (exec form): it handles SIGTERM itself and drains before exiting.
STOPSIGNAL SIGTERM
ENTRYPOINT ["siem-agent"]
CMD ["run", "--config", "/etc/siem-agent/agent.toml"]
