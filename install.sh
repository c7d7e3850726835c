#!/usr/bin/env bash
# Installs a phab-dock-ci agent from this checkout on a Linux host as the systemd service
# phab-dock-ci-agent. Run as root:
#   ./install.sh --url wss://ci.example.com/agent --token-file /path/to/token [--name N] [--labels a,b] [--capacity N]
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: install.sh --url URL --token-file FILE [options]

  --url URL           coordinator agent endpoint, ws:// or wss://…/agent (required)
  --token-file FILE   file holding the agent token (required; copied, mode 0600)
  --name NAME         agent name (default: the host name)
  --labels LIST       comma list of labels
  --capacity N        jobs run at once (default 1)
  --prefix DIR        where the program goes (default /opt/phab-dock-ci)
  --dry-run           print what would be done, change nothing
USAGE
}

url="" token_file="" name="" labels="" capacity="1" prefix="/opt/phab-dock-ci" dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --url) url="${2:-}"; shift 2 ;;
    --token-file) token_file="${2:-}"; shift 2 ;;
    --name) name="${2:-}"; shift 2 ;;
    --labels) labels="${2:-}"; shift 2 ;;
    --capacity) capacity="${2:-}"; shift 2 ;;
    --prefix) prefix="${2:-}"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

fail() { echo "install.sh: $*" >&2; exit 1; }
run() { if [ "$dry_run" = 1 ]; then echo "+ $*"; else "$@"; fi; }

[[ "$url" =~ ^wss?://[^/]+ ]] || fail "--url must be a ws:// or wss:// URL of the coordinator's /agent endpoint"
[ -n "$token_file" ] && [ -r "$token_file" ] || fail "--token-file must name a readable file"
[[ "$capacity" =~ ^[1-9][0-9]*$ ]] || fail "--capacity must be a positive number"
[ -z "$name" ] || [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || fail "--name may use letters, digits, '.', '_' and '-'"
[ -z "$labels" ] || [[ "$labels" =~ ^[A-Za-z0-9_.:=,-]+$ ]] || fail "--labels must be a comma list of simple words"
[ "$dry_run" = 1 ] || [ "$(id -u)" = 0 ] || fail "run as root (it installs a systemd service)"

command -v node >/dev/null || fail "Node.js >= 20.18 is required"
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=18)?0:1)' \
  || fail "Node.js >= 20.18 is required (found $(node --version))"
command -v git >/dev/null || fail "git is required"
command -v docker >/dev/null || [ -S /var/run/docker.sock ] || fail "a Docker engine is required"
[ "$dry_run" = 1 ] || command -v systemctl >/dev/null || fail "systemd is required"

src="$(cd "$(dirname "$0")" && pwd)"
conf_dir=/etc/phab-dock-ci
state_dir=/var/lib/phab-dock-ci/agent
user=phab-dock-ci

echo "installing the phab-dock-ci agent into $prefix"
if ! id "$user" >/dev/null 2>&1; then
  run useradd --system --home-dir /var/lib/phab-dock-ci --shell /usr/sbin/nologin "$user"
fi
# Membership of the docker group lets the agent drive the engine (it is root-equivalent on the host).
run usermod -aG docker "$user"
run mkdir -p "$prefix" "$conf_dir" "$state_dir"
run cp -a "$src/package.json" "$src/package-lock.json" "$src/tsconfig.json" "$src/protocol" "$src/agent" \
  "$src/coordinator" "$src/bin" "$prefix/"
if [ "$dry_run" = 1 ]; then
  echo "+ (cd $prefix && npm ci && npx tsc -p tsconfig.json && npm prune --omit=dev)"
else
  (cd "$prefix" && npm ci --no-audit --no-fund && npx tsc -p tsconfig.json && npm prune --omit=dev)
fi
run install -m 0600 -o root -g root "$token_file" "$conf_dir/agent-token"

env_file="$conf_dir/agent.env"
unit=/etc/systemd/system/phab-dock-ci-agent.service
if [ "$dry_run" = 1 ]; then
  echo "+ write $env_file and $unit"
else
  cat >"$env_file" <<ENV
PDCI_URL=$url
PDCI_CAPACITY=$capacity
PDCI_LABELS=$labels
PDCI_WORK_DIR=$state_dir
${name:+PDCI_AGENT_NAME=$name}
ENV
  chown -R "$user" "$state_dir"
  cat >"$unit" <<UNIT
[Unit]
Description=phab-dock-ci build agent
After=network-online.target docker.service
Wants=network-online.target

[Service]
User=$user
EnvironmentFile=$env_file
# The token file stays root-only; systemd hands it over as a credential.
LoadCredential=agent-token:$conf_dir/agent-token
ExecStart=/usr/bin/env node $prefix/dist/bin/phab-dock-ci.js agent --token-file \${CREDENTIALS_DIRECTORY}/agent-token
# SIGTERM drains: running jobs finish before the agent exits.
KillMode=mixed
TimeoutStopSec=3600
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
UNIT
fi
run systemctl daemon-reload
run systemctl enable --now phab-dock-ci-agent
echo "done: systemctl status phab-dock-ci-agent; journalctl -u phab-dock-ci-agent -f"
