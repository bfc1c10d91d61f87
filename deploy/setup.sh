#!/usr/bin/env bash
# Shared set-up of ./deploy/up and ./deploy/test. Each step is skipped when done already.
# Sourced, not run: it sets REPO, VENV and LORAFAAS_HOME for the caller.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
export LORAFAAS_HOME="${LORAFAAS_HOME:-$HOME/.lorafaas}"
mkdir -p "$LORAFAAS_HOME"

say() { printf '[setup] %s\n' "$*" >&2; }

is_debian_root() { [ "$(id -u)" = 0 ] && [ -f /etc/debian_version ]; }

apt_install() {
  # Installs Debian packages that are missing; needs root on Debian.
  local missing=()
  for package in "$@"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! is_debian_root; then
    say "missing packages: ${missing[*]}; install them (apt-get install ${missing[*]}) and rerun"
    exit 1
  fi
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
}

ensure_venv() {
  # The stamp holds a hash of pyproject.toml: a changed dependency list reinstalls.
  local stamp="$VENV/.lorafaas-installed" want
  want="$(sha256sum "$REPO/pyproject.toml" | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  say "creating $VENV and installing the project (torch==2.13.0, CPU wheel)"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  # torch first and pinned: a loose requirement elsewhere must find it installed.
  "$VENV/bin/pip" install -q "torch==2.13.0"
  "$VENV/bin/pip" install -q -e "$REPO[test]"
  echo "$want" >"$stamp"
}

docker_answers() { docker info >/dev/null 2>&1; }

ensure_docker() {
  docker_answers && return 0
  if ! command -v dockerd >/dev/null 2>&1; then
    if is_debian_root; then
      apt_install docker.io
    else
      say "no Docker engine answers and none is installed: install Docker (Debian: apt-get install docker.io) and start it"
      exit 1
    fi
  fi
  if ! docker_answers; then
    if [ "$(id -u)" != 0 ]; then
      say "the Docker engine is installed but not running: start it (sudo dockerd, or systemctl start docker)"
      exit 1
    fi
    say "starting dockerd (log: /var/log/lorafaas-dockerd.log)"
    nohup dockerd >/var/log/lorafaas-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do
      docker_answers && break
      sleep 1
    done
    docker_answers || { say "dockerd did not start; see /var/log/lorafaas-dockerd.log"; exit 1; }
  fi
}

ensure_host_tools() {
  # debootstrap builds the runtime image's base offline when no registry answers.
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
}

# The PostgreSQL test server: tests marked `postgres` create a fresh database per test
# through this role (hence CREATEDB) and skip when LORAFAAS_TEST_POSTGRES_URL is unset.
PG_ROLE=lorafaas
PG_TEST_DB=lorafaas_test
PG_TEST_URL="postgresql+psycopg://$PG_ROLE:$PG_ROLE@127.0.0.1:5432/$PG_TEST_DB"

postgres_answers() {
  # pg_isready comes with the PostgreSQL client; without it a TCP connect will do.
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h 127.0.0.1 -p 5432
  else
    (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null
  fi
}

postgres_test_db_works() {
  # Logs in as the test role, through the driver the tests use, and checks it may CREATEDB.
  "$VENV/bin/python" - "$PG_TEST_URL" 2>/dev/null <<'EOF'
import sys
import psycopg
with psycopg.connect(sys.argv[1].replace("+psycopg", ""), connect_timeout=5) as connection:
    query = "SELECT rolcreatedb FROM pg_roles WHERE rolname = current_user"
    sys.exit(0 if connection.execute(query).fetchone()[0] else 1)
EOF
}

as_postgres() {
  # From /, so psql does not complain that it cannot enter the caller's folder.
  (cd / && runuser -u postgres -- "$@")
}

postgres_sql() { as_postgres psql -X -q -t -A -v ON_ERROR_STOP=1 -c "$1"; }

start_postgres() {
  # No systemd here: pg_ctlcluster starts the newest installed version's `main` cluster.
  local version
  if [ "$(id -u)" != 0 ]; then
    say "PostgreSQL is installed but not running: start it (as root: pg_ctlcluster <version> main start)"
    exit 1
  fi
  version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)"
  if [ -z "$version" ]; then
    say "PostgreSQL is installed but has no cluster: run pg_createcluster --start <version> main"
    exit 1
  fi
  say "starting PostgreSQL $version (cluster main)"
  if ! pg_ctlcluster "$version" main start >/dev/null 2>&1 && ! postgres_answers; then
    say "PostgreSQL did not start; see /var/log/postgresql/postgresql-$version-main.log"
    exit 1
  fi
  for _ in $(seq 1 30); do
    postgres_answers && return 0
    sleep 1
  done
  say "PostgreSQL started but does not answer on 127.0.0.1:5432; see /var/log/postgresql/"
  exit 1
}

create_postgres_test_db() {
  if ! is_debian_root || ! id postgres >/dev/null 2>&1; then
    say "PostgreSQL answers but $PG_TEST_URL does not work: as its superuser run"
    say "  CREATE ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_ROLE'; CREATE DATABASE $PG_TEST_DB OWNER $PG_ROLE;"
    say "or set LORAFAAS_TEST_POSTGRES_URL to a server where that role may create databases"
    exit 1
  fi
  say "creating PostgreSQL role $PG_ROLE and database $PG_TEST_DB"
  # ALTER on an existing role resets what the tests rely on: password, login, CREATEDB.
  if [ -z "$(postgres_sql "SELECT 1 FROM pg_roles WHERE rolname = '$PG_ROLE'")" ]; then
    postgres_sql "CREATE ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_ROLE'"
  else
    postgres_sql "ALTER ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_ROLE'"
  fi
  if [ -z "$(postgres_sql "SELECT 1 FROM pg_database WHERE datname = '$PG_TEST_DB'")" ]; then
    as_postgres createdb -O "$PG_ROLE" "$PG_TEST_DB"
  fi
}

ensure_postgres() {
  # A URL set by the caller (CI, a developer's own server) is used as it is.
  if [ -n "${LORAFAAS_TEST_POSTGRES_URL:-}" ]; then
    return 0
  fi
  if ! postgres_answers; then
    command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql
    # The package's post-install may have started the cluster already.
    postgres_answers || start_postgres
  fi
  postgres_test_db_works || create_postgres_test_db
  if ! postgres_test_db_works; then
    say "cannot log in to $PG_TEST_URL; check pg_hba.conf allows scram-sha-256 from 127.0.0.1"
    exit 1
  fi
  export LORAFAAS_TEST_POSTGRES_URL="$PG_TEST_URL"
}

ensure_browser() {
  # Debian's Chromium, driven by Playwright in tests/browser (never `playwright install`).
  [ -x /usr/bin/chromium ] || apt_install chromium
}

ensure_broker() {
  # NATS with JetStream: the broker of the multi-machine roles and of their tests.
  command -v nats-server >/dev/null 2>&1 || apt_install nats-server
}

setup_all() {
  ensure_venv
  ensure_docker
  ensure_host_tools
  ensure_broker
  "$VENV/bin/lorafaas" setup
}
