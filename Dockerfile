# The Quorate node image: Node.js 24 (the active LTS; the code also runs on Node 20, which the
# development machines use), git, bubblewrap for sandboxed builds and passt (pasta) for the
# fetch phase's user-mode network.
FROM node:24-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends git bubblewrap passt ca-certificates tar \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/quorate
COPY package.json package-lock.json tsconfig.json tsconfig.base.json ./
COPY packages ./packages
RUN npm ci --no-audit --no-fund && npx tsc -b && npm prune --omit=dev
# The node runs as an unprivileged user; builds run under bubblewrap inside the container.
RUN useradd --create-home --uid 10001 quorate
USER quorate
ENTRYPOINT ["node", "/opt/quorate/packages/cli/dist/main.js"]
CMD ["--help"]
