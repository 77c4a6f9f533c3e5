# The production image: `node dist/main.js` on production dependencies only.
# CI cannot reach an image registry, so it never builds this file; it runs
# test/production.test.ts instead, which takes the same steps: the build
# context that .dockerignore lets through, `npm run build`, then a directory
# holding only package.json, package-lock.json and dist/, `npm ci --omit=dev`,
# and `node dist/main.js`. Change one, change the other.

FROM node:20-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build

FROM node:20-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# Numeric, so that Kubernetes' runAsNonRoot can check it (the image's "node" user is 1000).
# The files above stay root's: the server cannot rewrite its own code.
USER 1000:1000
EXPOSE 8080
# Exec form: node is PID 1 and gets SIGTERM itself. It handles SIGTERM and
# SIGINT (a PID 1 without handlers would ignore them) and starts no children,
# so no init process is needed.
CMD ["node", "dist/main.js"]
