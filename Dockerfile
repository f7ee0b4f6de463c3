# syntax=docker/dockerfile:1
# The example server (chat page, Swagger docs, demo service) on fastify-ws-hub.
#   docker build -t fastify-ws-hub-example .
#   docker run --rm -p 3000:3000 fastify-ws-hub-example      -> http://localhost:3000
# With Redis and Kafka, see docker-compose.yml. The same image runs the
# Kafka price feed: node .build/example/price-feed.js

# ---- build: compile the library (dist/) and the example (.build/example/) ----
FROM node:20-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY lib ./lib
COPY example ./example
RUN npm run build && npx tsc -p example/tsconfig.json

# Runtime packages: the library's dependencies, plus what the example imports
# that the library lists as devDependencies, plus the clients of the backends
# docker-compose.yml configures (ioredis, kafkajs: optional peers the library
# loads only when asked to). The script moves those to dependencies in this
# stage's package.json only; prune then drops the rest. Versions stay those
# of the lockfile, and nothing is downloaded.
RUN node example/docker/promote-dependencies.mjs fastify @fastify/swagger @fastify/swagger-ui @fastify/static ioredis kafkajs && \
    npm prune --omit=dev --no-audit --no-fund

# ---- runtime ----
FROM node:20-slim AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000
WORKDIR /app
# Owned by root and only readable by the server's user: it cannot rewrite its own code.
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/.build/example ./.build/example
COPY --from=build /app/example/public ./example/public
# The `node` user (uid 1000) comes with the official image.
USER node
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", ".build/example/healthcheck.js"]
# node as PID 1 receives SIGTERM from `docker stop`; the server handles it
# with app.close().
CMD ["node", ".build/example/server.js"]
