# One image for every ModelOps service; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    MODELOPS_HOME=/var/lib/modelops MODELOPS_CONFIG_FILE=/etc/modelops/modelops.toml

WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY common ./common
COPY services ./services
COPY dashboard ./dashboard
RUN pip install --no-cache-dir '.[postgres]' \
    && useradd --system --home-dir /var/lib/modelops --create-home modelops

USER modelops
EXPOSE 8000 5555
CMD ["modelops", "--help"]
