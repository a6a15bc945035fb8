#!/usr/bin/env bash
# The stand-in's entrypoint (see the Dockerfile): on the first start, an empty
# PGDATA gets a cluster whose superuser is POSTGRES_USER (password
# POSTGRES_PASSWORD, never printed) and a database POSTGRES_DB, like the
# official image; then the server runs as PID 1. Any other command
# (psql, pg_isready, bash) runs as given.
set -euo pipefail

if [ "${1:-}" != postgres ]; then
  exec "$@"
fi

# Started as root (docker-compose): own the data and socket directories, then
# drop to the postgres user. Started as uid 999 already: nothing to change.
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 0700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?is required (the stand-in, like the official image, refuses to start without it)}"
  user="${POSTGRES_USER:-postgres}"
  db="${POSTGRES_DB:-$user}"
  echo "stand-in: initialising the cluster in $PGDATA (superuser $user, database $db)"
  # The password reaches initdb through a pipe, never a command line or a log.
  initdb --username="$user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  # Every interface, password authentication from anywhere (as the official image).
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  echo 'host all all all scram-sha-256' >>"$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    # Single-user mode: no server listens yet; the database's owner is the superuser.
    printf 'CREATE DATABASE "%s";\n' "${db//\"/\"\"}" | postgres --single -D "$PGDATA" -j postgres >/dev/null
  fi
  echo "stand-in: cluster ready"
fi

exec "$@"
