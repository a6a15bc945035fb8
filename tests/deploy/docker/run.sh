#!/usr/bin/env bash
# npm run test:docker: the three services built into images and run with
# docker-compose, checked from the host. Starts a local engine and seeds the
# base images first (no registry is reachable on our machines), then runs
# compose.docker.ts. The observability stack's third-party images are not
# started here: they cannot be pulled offline. Nor can the official postgres
# image: users' database runs a stand-in built here from Debian's postgresql
# package (postgres-standin/), swapped in by compose.postgres-standin.yml.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
shared="$root/../shared"
if [ -d "$shared/tools" ]; then
  bash "$shared/tools/start-docker.sh"
  bash "$shared/tools/offline-base-images.sh" 24
fi
command -v docker-compose >/dev/null || { echo "test:docker: docker-compose is required" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "test:docker: no Docker engine is running" >&2; exit 1; }
docker build -t rpc-chain-test/postgres-standin:bookworm "$here/postgres-standin"
exec node --test --test-timeout=1200000 "$here/compose.docker.ts"
