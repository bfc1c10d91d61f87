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

setup_all() {
  ensure_venv
  ensure_docker
  ensure_host_tools
  "$VENV/bin/lorafaas" setup
}
