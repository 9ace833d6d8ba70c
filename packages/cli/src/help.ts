/**
 * The help of every `quorate` command: what it does, its flags (all of them) and examples.
 * `quorate COMMAND --help` (or `quorate help COMMAND`) prints one of these on stdout, exit 0.
 */

export interface CommandHelp { usage: string, summary: string, options: string[], examples: string[], notes?: string[] }

export const COMMAND_HELP: Record<string, CommandHelp> = {
  init: {
    usage: 'quorate init --dir DIR --name BUILDER --org ORG [options]',
    summary: 'Creates a builder: its signing key and peer key (mode 0600), node.json and member.json (the public part to share), and prints where each file is.',
    options: [
      '--dir DIR              where to write the files (created with mode 0700)',
      '--name BUILDER         the builder\'s name in the policy',
      '--org ORG              its organization (the quorum counts organizations)',
      '--listen MULTIADDR     libp2p listen address (default /ip4/0.0.0.0/tcp/4001)',
      '--http-host HOST       HTTP API address (default 127.0.0.1)',
      '--http-port N          HTTP API port (default 8080)',
      '--bootstrap MULTIADDR  a peer to connect to, with /p2p/<peer id> (repeatable)',
      '--sandbox bwrap|none   build sandbox (default bwrap)',
      '--endpoint URL         this builder\'s public HTTP API, written into member.json',
      '--policy FILE          where node.json expects the policy (default policy.json)',
      '--poll-seconds N       how often to poll repositories (default 30)',
      '--loopback             a local test network on 127.0.0.1 (loopback peers allowed)',
      '--force                replace existing keys (a builder normally keeps its key)'
    ],
    examples: [
      'quorate init --dir /etc/quorate --name acme-ci --org acme --endpoint https://quorate.acme.example',
      'quorate init --dir ./b1 --name b1 --org o1 --listen /ip4/127.0.0.1/tcp/4101 --http-port 8101 --loopback'
    ]
  },
  policy: {
    usage: 'quorate policy assemble|check|digest …',
    summary: 'Makes, checks and pins the network policy that every member runs with.',
    options: [
      'assemble --member FILE... (--repo ID --url GIT_URL [--branch NAME]... [--tag GLOB]... --recipe FILE)... [--repos FILE] [--threshold N] [--mode majority|unanimous] [--out FILE]',
      '           each --repo starts a repository; the --url, --branch, --tag and --recipe after it belong to it.',
      '           --repos FILE: a JSON list of {"id", "url", "branches"?, "tags"?, "recipe": FILE | {…}} instead of (or besides) --repo groups',
      'check FILE     validates a policy (every field, repository URLs by the rule the node applies) and prints its digest and summary',
      'digest FILE    prints only the policy digest (what `verify --policy-digest` pins)'
    ],
    examples: [
      'quorate policy assemble --member a/member.json --member b/member.json --member c/member.json \\\n    --repo hello --url https://git.example/hello.git --branch main --recipe hello.json \\\n    --repo zlib --url https://github.com/madler/zlib.git --branch develop --recipe zlib.json --out policy.json',
      'quorate policy check policy.json',
      'DIGEST=$(quorate policy digest policy.json)'
    ]
  },
  node: {
    usage: 'quorate node --config FILE [--log-format text|json] [--debug]',
    summary: 'Runs a node: watches the policy\'s repositories, builds in the sandbox, signs, gossips, syncs and serves the HTTP API and dashboard.',
    options: ['--config FILE         node.json (written by "quorate init")', '--log-format text|json one JSON object per line with json (default text)', '--debug               debug log lines, and stacks with errors'],
    examples: ['quorate node --config /etc/quorate/node.json --log-format json']
  },
  verify: {
    usage: 'quorate verify (--node URL... | --bundle FILE) --policy FILE --repo ID --commit SHA [options]',
    summary: 'The deploy gate: fetches the envelopes, decides with YOUR copy of the policy, prints PASSED or FAILED on stderr. Exit 0 trusted, 1 disputed/failed/a failed check, 3 pending, 2 usage or no node answered.',
    options: [
      '--node URL             a node to ask (repeatable; more nodes, fewer ways to withhold)',
      '--bundle FILE          decide from a bundle ("quorate bundle") instead of nodes; --repo/--commit optional',
      '--policy FILE          the network policy you trust',
      '--policy-digest HEX    refuse unless the policy has this digest',
      '--repo ID --commit SHA the commit to verify',
      '--digest HEX           also require this narSha256',
      '--ref REF              also require that a quorum saw the commit on REF (refs/heads/main)',
      '--artifact FILE        also require FILE to be in the trusted file list',
      '--image                print the trusted OCI image references',
      '--wait [--timeout S]   keep waiting while pending (default 600 s)',
      '--json                 one JSON document on stdout',
      '--vsa-key KEYFILE --vsa-out FILE   also write a SLSA Verification Summary (PASSED/FAILED) signed by your key (quorate key generate)',
      '--token TOKEN       read token for a private repository\'s build logs (a failed commit shows the end of each failing builder\'s log; or QUORATE_READ_TOKEN)'
    ],
    examples: [
      'quorate verify --node https://q1.example --node https://q2.example --policy policy.json --repo hello --commit "$GIT_SHA" --ref refs/heads/main',
      'quorate verify --bundle hello.bundle.json --policy policy.json --policy-digest "$DIGEST" --json'
    ]
  },
  bundle: {
    usage: 'quorate bundle --node URL... --repo ID --commit SHA [--format json|intoto-jsonl] [--out FILE]',
    summary: 'Exports every envelope known for a commit (and equivocation proofs) into one file that `verify --bundle` checks offline.',
    options: ['--node URL (repeatable)', '--repo ID --commit SHA', '--format json | intoto-jsonl   our bundle with the policy digest (default), or one DSSE envelope per line (the in-toto bundle convention)', '--out FILE  (default: stdout)'],
    examples: ['quorate bundle --node http://127.0.0.1:8080 --repo hello --commit "$GIT_SHA" --out hello.bundle.json', 'quorate bundle --node http://127.0.0.1:8080 --repo hello --commit "$GIT_SHA" --format intoto-jsonl --out hello.intoto.jsonl']
  },
  fetch: {
    usage: 'quorate fetch --node URL... --policy FILE --repo ID (--commit SHA [--ref REF] | --ref REF) (--out DIR | --oci DIR) [--policy-digest HEX] [--token TOKEN] [--json]',
    summary: 'Downloads the output the quorum trusts from any node that has it, trusting none: decides like verify, checks every file by sha256 and the tree by narSha256, then moves it into DIR in one step. Exit codes as verify (2 also when no node serves a file; nothing is left in DIR).',
    options: [
      '--node URL             a node to ask and download from (repeatable; the supporters\' endpoints in the policy are tried too)',
      '--policy FILE          the network policy you trust (--policy-digest HEX pins it)',
      '--repo ID --commit SHA the commit whose trusted output to fetch',
      '--ref REF              require the commit on REF; without --commit: the latest trusted commit a quorum saw on REF',
      '--out DIR              where the output tree goes (must not exist, or be empty)',
      '--oci DIR              the trusted result is an OCI image: write its image layout to DIR and print name@sha256:…',
      '--token TOKEN          read token for a private repository\'s file list and files (or QUORATE_READ_TOKEN; attestations are public)',
      '--json                 a JSON report on stdout (files, bytes, which node served what, refused copies)'
    ],
    examples: [
      'quorate fetch --node https://quorate.alpha.example --node https://quorate.beta.example --policy policy.json --repo hello --ref refs/heads/main --out ./release',
      'quorate fetch --node "$Q1" --node "$Q2" --policy policy.json --repo app --commit "$SHA" --oci ./app-oci && skopeo copy oci:./app-oci docker://registry.example/app:"$SHA"'
    ]
  },
  audit: {
    usage: 'quorate audit --node URL... --policy FILE [--repo ID] [--commit SHA] [--all] [--limit N] [--json | --markdown] | --diffoscope COMMIT',
    summary: 'Explains disagreements, failures, recipe mismatches and equivocations: which files differ, which environments differ, what an equivocator signed (not counted).',
    options: [
      '--node URL (repeatable)  --policy FILE',
      '--repo ID        one repository (default: all in the policy)',
      '--commit SHA     one commit (default: the newest --limit commits, 50)',
      '--all            list commits without findings too',
      '--json | --markdown  output format (default text)',
      '--diffoscope COMMIT  rebuild builders\' outputs from their signed file lists (fixed mtimes) and compare them with diffoscope:',
      '                     the trusted result against each dissenting one by default; the repository is found when --repo is missing',
      '--builders A,B       with --diffoscope: compare these two builders',
      '--out FILE           with --diffoscope: write the report there'
    ],
    examples: [
      'quorate audit --node http://127.0.0.1:8080 --policy policy.json --repo hello --markdown > audit.md',
      'quorate audit --node http://127.0.0.1:8080 --policy policy.json --diffoscope "$SHA" --builders alpha-ci,mallory-ci --out diff.txt'
    ]
  },
  latest: {
    usage: 'quorate latest --node URL... --repo ID --ref REF [--policy FILE] [--json]',
    summary: 'The newest trusted commit that a quorum saw on REF; with --policy it is verified locally too.',
    options: ['--node URL (repeatable)', '--repo ID', '--ref REF   e.g. refs/heads/main', '--policy FILE  verify the answer yourself', '--json'],
    examples: ['quorate latest --node http://127.0.0.1:8080 --repo hello --ref refs/heads/main --policy policy.json']
  },
  which: {
    usage: 'quorate which NARSHA256 --node URL... [--json]',
    summary: 'Which commits produced an output digest, and whether the digest is their trusted result.',
    options: ['--node URL (repeatable)', '--json'],
    examples: ['quorate which "$(quorate digest ./dist | cut -d" " -f1)" --node http://127.0.0.1:8080']
  },
  key: {
    usage: 'quorate key rotate --config FILE | key show [--pem | --json] (--config FILE | --key FILE | --public HEX) | key generate --out FILE [--force]',
    summary: 'Rotates a stopped node\'s builder key (re-signs its stored results under a new key and prints the policy entry to agree on); shows a public key, as PEM for OpenSSL, cosign and securesystemslib; generates a key file (e.g. the pipeline key that signs `verify --vsa-out`).',
    options: [
      'rotate --config FILE   node.json of the stopped node',
      'show --pem             the public key as PEM (SubjectPublicKeyInfo); --json: the in-toto/TUF key description with its keyid',
      'show --config FILE | --key FILE | --public HEX   whose key: a node\'s builder key, a key file, or a hex key from the policy',
      'generate --out FILE    a new Ed25519 key file (mode 0600); --force replaces an existing one'
    ],
    examples: [
      'quorate key rotate --config /etc/quorate/node.json',
      'quorate key show --pem --config /etc/quorate/node.json > alpha-ci.pem',
      'quorate key generate --out pipeline-key.json'
    ]
  },
  backup: {
    usage: 'quorate backup --config FILE --out BACKUP.tar.gz',
    summary: 'Backs up a stopped node\'s data directory (keys are not in it: keep them separately).',
    options: ['--config FILE  node.json', '--out FILE     the archive to write'],
    examples: ['quorate backup --config /etc/quorate/node.json --out /backup/quorate-$(date +%F).tar.gz']
  },
  restore: {
    usage: 'quorate restore --config FILE --from BACKUP.tar.gz [--force]',
    summary: 'Restores a backup into a stopped node\'s data directory.',
    options: ['--config FILE', '--from FILE', '--force   replace an existing data directory'],
    examples: ['quorate restore --config /etc/quorate/node.json --from /backup/quorate-2026-11-27.tar.gz']
  },
  digest: {
    usage: 'quorate digest PATH [--json]',
    summary: 'The narSha256 of a directory or file, as builders compute it (compare with a trusted digest).',
    options: ['--json   also the file list digest, file count and bytes'],
    examples: ['quorate digest ./dist']
  },
  rebuild: {
    usage: 'quorate rebuild --policy FILE --repo ID --commit SHA [--out DIR] [--node URL]... [options]',
    summary: 'Reproduces one commit outside the network (no node, no keys): a fresh clone, the recipe, the same sandbox, paths, environment, SOURCE_DATE_EPOCH and pinned build root a node uses; prints the narSha256, and with --node whether it matches the quorum\'s trusted result and which files differ. Without a pinned root it builds with this host\'s toolchain and says so.',
    options: [
      '--policy FILE               the network policy (the recipe, or recipeFromRepo)',
      '--repo ID --commit SHA      what to rebuild (a full commit id)',
      '--out DIR                   keep the output here (a new or empty directory)',
      '--node URL                  compare with the quorum, decided here from these nodes\' envelopes (repeatable)',
      '--sandbox bwrap|none        default bwrap, as nodes; none differs from nodes on projects that embed paths',
      '--root-cache DIR            where unpacked build roots are kept (default ~/.cache/quorate/roots; as root a directory under the temp dir)',
      '--insecure-registry HOST:PORT  plain HTTP to this loopback registry (tests, local mirrors)',
      '--keep-work                 keep the checkout and work directories',
      '--json                      one JSON report on stdout'
    ],
    examples: [
      'quorate rebuild --policy policy.json --repo hello --commit 4f2c… --node https://quorate.acme.example',
      'quorate rebuild --policy policy.json --repo hello --commit 4f2c… --out ./hello-out --json'
    ],
    notes: ['Exit codes: 0 built (and matching, with --node), 1 the build failed or does not match the trusted result, 3 the network has no trusted result yet, 2 usage or I/O error.']
  },
  status: {
    usage: 'quorate status --node URL [--json]',
    summary: 'A node\'s state: peers, builds queued and running, recent decisions per repository.',
    options: ['--node URL   the node\'s HTTP address (http://host:port)', '--json'],
    examples: ['quorate status --node http://127.0.0.1:8080', 'quorate status --node http://127.0.0.1:8080 --json | jq .queue']
  },
  logs: {
    usage: 'quorate logs --node URL... --repo ID --commit SHA [--builder NAME] [--policy FILE] [--token TOKEN]',
    summary: 'Prints the build logs of a commit (each builder\'s, or one), found by the build-log digest its signed attestation carries and checked against it.',
    options: [
      '--node URL        a node to ask (repeatable); the builders\' endpoints in the policy are asked too',
      '--repo ID         the repository id in the policy',
      '--commit SHA      the full commit id',
      '--builder NAME    only this builder\'s log',
      '--policy FILE     check signatures against this policy (default: the first node\'s policy)',
      '--token TOKEN     read token for a private repository (or QUORATE_READ_TOKEN)'
    ],
    examples: [
      'quorate logs --node http://127.0.0.1:8080 --repo hello --commit 3f2c…e1 --builder acme-ci',
      'quorate logs --node https://quorate.acme.example --repo hello --commit 3f2c…e1 | tail -50'
    ],
    notes: ['A log longer than the recipe\'s maxLogBytes is kept as its head and tail with a line saying how much was left out; that text cannot be checked against the signed digest, and the command says so on stderr.']
  },
  'rebuild-request': {
    usage: 'quorate rebuild-request --node URL --repo ID --commit SHA [--token-file FILE] [--json]',
    summary: 'An administrator\'s action: asks your node to build a commit again after its final failure, once you fixed the cause on the node\'s side (an internal mirror that was down, a missing credential or tool). The node signs its final attempt again as not final (its organization is open again, so the commit turns pending where a quorum is still reachable), queues the build, and the next attempt is signed as attempt n+1. Not "quorate rebuild", which reproduces a commit on your own machine.',
    options: [
      '--node URL          your node\'s HTTP address (http://host:port)',
      '--repo ID           the repository id in the policy',
      '--commit SHA        the full commit id that failed finally on that node',
      '--token-file FILE   the node\'s admin token (mode 0600; the file named by "adminTokenFile" in node.json); default: QUORATE_ADMIN_TOKEN',
      '--json              the node\'s answer as JSON on stdout'
    ],
    examples: [
      'quorate rebuild-request --node http://127.0.0.1:8080 --repo hello --commit 3f2c…e1 --token-file /etc/quorate/admin-token',
      'QUORATE_ADMIN_TOKEN=$(cat admin-token) quorate rebuild-request --node http://127.0.0.1:8080 --repo hello --commit 3f2c…e1 && quorate verify --node http://127.0.0.1:8080 --policy policy.json --repo hello --commit 3f2c…e1 --wait'
    ],
    notes: [
      'Exit codes: 0 queued, 1 refused (the commit has no final failure on that node: it is still retrying, was built successfully, or is unknown there), 2 usage, a wrong or missing token (401/403) or no answer.',
      'Each organization\'s administrator asks their own node: a commit that failed everywhere needs threshold organizations to rebuild it before it can be trusted.'
    ]
  }
}

/** The help text of one command, or undefined for an unknown one. */
export function commandHelp (cmd: string): string | undefined {
  if (!Object.hasOwn(COMMAND_HELP, cmd)) return undefined
  const h = COMMAND_HELP[cmd]
  return [
    `Usage: ${h.usage}`, '', h.summary, '', 'Options:', ...h.options.map(o => `  ${o}`), '', 'Examples:', ...h.examples.map(e => `  ${e}`),
    ...(h.notes !== undefined ? ['', ...h.notes] : []), ''
  ].join('\n')
}
