# The Quorate node image: Node.js 20, git and bubblewrap for sandboxed builds.
FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends git bubblewrap ca-certificates tar \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/quorate
COPY package.json package-lock.json tsconfig.json tsconfig.base.json ./
COPY packages ./packages
RUN npm ci --no-audit --no-fund && npx tsc -b && npm prune --omit=dev
# Builds run as uid 1000 inside bubblewrap; the node itself runs as an unprivileged user too.
RUN useradd --create-home --uid 10001 quorate
USER quorate
ENTRYPOINT ["node", "/opt/quorate/packages/cli/dist/main.js"]
CMD ["--help"]
