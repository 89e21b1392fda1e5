# The exporter image: `docker build -t orchestrator-exporter .` (docker-compose.yml builds it).
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin exporter \
    && mkdir -p /data \
    && chown exporter /data

# The SQLite ledger lives in /data: mount a volume there, or the counters die with the container.
VOLUME ["/data"]
USER exporter
EXPOSE 8088

HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8088/ready', timeout=2)"]

CMD ["orchestrator-exporter", "serve", "--host", "0.0.0.0", "--port", "8088", \
     "--database-url", "sqlite:////data/ledger.db"]
