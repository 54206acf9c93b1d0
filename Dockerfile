# alertbridge: one image for every replica. Build: docker build -t alertbridge .
FROM python:3.12-slim

WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . && rm -rf /build

# The examples ship in the image so that `--config /etc/alertbridge/examples/…` works out of the box.
COPY examples /etc/alertbridge/examples

RUN useradd --system --uid 10001 --home-dir /data alertbridge && mkdir -p /data && chown alertbridge /data
USER alertbridge
WORKDIR /data

# SQLite in the data volume unless ALERTBRIDGE_STORE points at PostgreSQL (docker-compose.yml does).
ENV ALERTBRIDGE_STORE=sqlite:////data/alertbridge.db \
    PYTHONUNBUFFERED=1
EXPOSE 8080

# Alive: the process answers. (Ready, /readyz, is for the load balancer: see docker-compose.yml.)
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]

ENTRYPOINT ["alertbridge"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
