#!/usr/bin/env bash
# Prepares ./compose for docker-compose.yml: a bare sample repository served by the git
# service, and for each of three builders (three organizations) a builder key, a peer key and
# a node config made by `quorate init`, bootstrap lists naming the first builder by its
# compose host name, and the network policy made by `quorate policy assemble`.
set -euo pipefail
cd "$(dirname "$0")/.."
quorate() { node packages/cli/dist/main.js "$@"; }
out=${1:-compose}
if [ -e "$out" ]; then echo "$out/ exists; remove it to start over" >&2; exit 2; fi
mkdir -p "$out/git"
node -e "import('./scripts/devnet.js').then(m => m.createSampleRepo('$out/sample-src'))"
git clone -q --bare "$out/sample-src" "$out/git/sample.git"
cp scripts/sample-recipe.json "$out/recipe.json"
for b in alpha beta gamma; do
  mkdir -p "$out/builder-$b"
  quorate init --dir "$out/builder-$b" --name "builder-$b" --org "org-$b" \
    --listen /ip4/0.0.0.0/tcp/4001 --http-host 0.0.0.0 --http-port 8080 --sandbox bwrap --poll-seconds 15 \
    --endpoint "http://builder-$b:8080" > "$out/builder-$b/init.txt"
done
members=()
for b in alpha beta gamma; do members+=(--member "$out/builder-$b/member.json"); done
quorate policy assemble "${members[@]}" \
  --repo sample --url git://git:9418/sample.git --branch main --recipe "$out/recipe.json" --out "$out/policy.json"
alpha_id=$(node -p "JSON.parse(require('fs').readFileSync('$out/builder-alpha/member.json', 'utf8')).peerId")
for b in alpha beta gamma; do
  cp "$out/policy.json" "$out/builder-$b/policy.json"
  node -e "
    const fs = require('fs'); const f = '$out/builder-$b/node.json'; const c = JSON.parse(fs.readFileSync(f));
    c.dataDir = '/etc/quorate/data';
    c.bootstrap = '$b' === 'alpha' ? [] : ['/dns4/builder-alpha/tcp/4001/p2p/$alpha_id'];
    fs.writeFileSync(f, JSON.stringify(c, null, 2));"
done
# The containers run as uid 10001.
chown -R 10001:10001 "$out" 2>/dev/null || echo "note: run 'sudo chown -R 10001:10001 $out' so the containers can write their data directories" >&2
echo "prepared $out/: now run 'docker compose up --build'"
