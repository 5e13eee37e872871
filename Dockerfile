# drillbook's production image: the official Airflow image plus drillbook, installed from uv.lock
# at build time (nothing is installed when a container starts), the CeleryExecutor's provider, and
# the PostgreSQL client binaries of every supported major (a restore needs pg_restore of the
# dump's major or newer; the backup-restore drill picks a matching one from /usr/lib/postgresql/*/bin).
#
#   docker build -t drillbook:local .        (docker-compose.yaml does this with `build: .`)
#
# Docker does not run on the development machines or in CI: tests/deploy/test_dockerfile.py parses
# this file, checks every COPY source exists and runs the logic of its RUN steps natively
# (`uv export` from the lock, every pin matching what the tests ran with).
ARG AIRFLOW_VERSION=3.3.2
FROM apache/airflow:${AIRFLOW_VERSION}-python3.11

ARG AIRFLOW_VERSION=3.3.2
ARG UV_VERSION=0.13.9
ARG PG_MAJORS="13 14 15 16 17"

USER root
# PostgreSQL's own Debian repository (apt.postgresql.org, "PGDG"): Debian bookworm itself ships only 15.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl gnupg; \
    install -d /usr/share/postgresql-common/pgdg; \
    curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc https://www.postgresql.org/media/keys/ACCC4CF8.asc; \
    . /etc/os-release; \
    echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt ${VERSION_CODENAME}-pgdg main" \
        > /etc/apt/sources.list.d/pgdg.list; \
    apt-get update; \
    apt-get install -y --no-install-recommends $(for v in ${PG_MAJORS}; do printf 'postgresql-client-%s ' "$v"; done); \
    for v in ${PG_MAJORS}; do test -x "/usr/lib/postgresql/$v/bin/pg_restore"; done; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*

# The official image installs Python packages as the `airflow` user (into its user site);
# installing as root would put them where the entrypoint does not look.
USER airflow
WORKDIR /opt/drillbook
COPY --chown=airflow:0 pyproject.toml uv.lock README.md LICENSE ./
COPY --chown=airflow:0 plugins/drillbook ./plugins/drillbook

# Every dependency at the version in uv.lock, hash-checked; apache-airflow is pinned there at the
# image's own version, so pip keeps the image's Airflow. drillbook itself without dependencies.
RUN set -eux; \
    pip install --no-cache-dir "uv==${UV_VERSION}"; \
    uv export --frozen --no-dev --no-emit-project --format requirements-txt > /tmp/requirements.txt; \
    grep -q "^apache-airflow==${AIRFLOW_VERSION} " /tmp/requirements.txt; \
    pip install --no-cache-dir --require-hashes -r /tmp/requirements.txt; \
    pip install --no-cache-dir --no-deps /opt/drillbook; \
    python -c "import airflow, celery; from airflow.providers.celery.executors.celery_executor import CeleryExecutor; assert airflow.__version__ == '${AIRFLOW_VERSION}', airflow.__version__"; \
    rm /tmp/requirements.txt

# The image runs without mounts too (Kubernetes): DAGs, the plugin and the catalogue are baked in;
# docker-compose.yaml mounts the working tree over them for development.
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins
COPY --chown=airflow:0 include /opt/airflow/include
WORKDIR /opt/airflow
ENV DRILLBOOK_CATALOGUE=/opt/airflow/include/drills.yaml
