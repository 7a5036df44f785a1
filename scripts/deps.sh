#!/usr/bin/env bash
# Installs what Herald's tests and `make run` need on a fresh Debian machine,
# and nothing when it is already there. Safe to run repeatedly.
set -euo pipefail

need_apt=()
have_pg() {
  command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}
have_pg || need_apt+=(postgresql)
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
command -v runuser >/dev/null 2>&1 || need_apt+=(util-linux)
# The console's browser test (internal/views/console_test.go) drives Debian's Chromium.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# deploy/compose_test.go validates docker-compose.yml with `docker-compose
# config`, which needs no Docker engine.
command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: please install: ${need_apt[*]} (needs root)" >&2
  else
    echo "deps: installing ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  fi
fi

# PostgreSQL refuses to run as root: Herald's local clusters run as the
# postgres user, which must exist.
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  echo "deps: creating the postgres system user"
  useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi
exit 0
