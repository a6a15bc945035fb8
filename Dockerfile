# One image recipe for every app: docker build --build-arg APP=users -t rpc-chain/users:0.1.0 .
# turbo prune keeps only the app and the workspaces it depends on, so a
# change elsewhere in the repo does not invalidate its install layer.
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS prune
ARG APP
WORKDIR /src
COPY . .
RUN npx --yes turbo@2.11.11 prune "@demo/${APP}" --docker

FROM ${NODE_IMAGE} AS build
ARG APP
WORKDIR /src
ENV TURBO_TELEMETRY_DISABLED=1
# Manifests and the pruned lockfile only: this layer is reused until dependencies change.
COPY --from=prune /src/out/json/ .
RUN npm ci --no-audit --no-fund && npm cache clean --force
COPY --from=prune /src/out/full/ .
# Root files turbo prune leaves out but every package's tsconfig extends.
COPY tsconfig.base.json ./
RUN npx turbo run build --filter="@demo/${APP}" \
 && npm prune --omit=dev --no-audit --no-fund \
 && rm -rf node_modules/.cache .turbo

FROM ${NODE_IMAGE}
ARG APP
ENV NODE_ENV=production
# V8 sizes its heap from the memory it sees: in a 256 MiB container Node 24 picks a 256 MB
# old space and a small young generation and then collects so eagerly that each call costs
# 1.5-2x the CPU (measured: 125 MB RSS but 920-1180 CPU-us/request at profiles, against
# 640 with room to grow). Pinned here instead, so that speed does not silently depend on the
# pod's limit: a 32 MB semi-space keeps short-lived request garbage out of the old space, and
# old space at 384 MB (75% of the 512Mi Kubernetes limit) bounds the heap below the limit.
# Measured ~195 MB RSS at 64 calls in flight (bench/RESULTS.md runs every process with
# these flags). Resize both together: tests/deploy checks the caps fit the limits.
ENV NODE_OPTIONS="--max-old-space-size=384 --max-semi-space-size=32"
WORKDIR /app
COPY --from=build --chown=node:node /src/node_modules ./node_modules
COPY --from=build --chown=node:node /src/packages ./packages
COPY --from=build --chown=node:node /src/apps ./apps
COPY --from=build --chown=node:node /src/package.json ./package.json
WORKDIR /app/apps/${APP}
USER node
# Node is PID 1 and handles SIGTERM itself (rpc-kit's graceful shutdown): no shell, no npm in between.
CMD ["node", "--enable-source-maps", "dist/main.js"]
