# One image for every ModelOps service; docker-compose.yml picks the command.
# Front-end libraries come from npm with the lockfile, in a build stage of their own.
FROM node:20-slim AS dashboard-assets
WORKDIR /build/dashboard
COPY dashboard/package.json dashboard/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MODELOPS_HOME=/var/lib/modelops

RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/modelops \
        --create-home modelops

# The processes run from /app with the commands of DESIGN.md (`python -m
# services.api.serve` for the API); the package installed from the same files,
# dashboard assets included, gives the `modelops` command.
WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY common ./common
COPY services ./services
COPY dashboard ./dashboard
COPY --from=dashboard-assets /build/dashboard/node_modules ./dashboard/node_modules
RUN pip install '.[postgres]' \
    && cd / && python -c "import dashboard; assert dashboard.VENDOR_FILES['chart.umd.js'].is_file()"

USER modelops
VOLUME ["/var/lib/modelops"]
EXPOSE 8000 5555
CMD ["modelops", "--help"]
