#!/usr/bin/env bash
# Installs Stoplight Prism (npm @stoplight/prism-cli 5.x), the validating proxy the cloud-driver
# tests put in front of their loopback fakes, into a cache directory when it is missing.
# Prints the path of the prism executable on stdout. Idempotent; quiet when already installed.
#   PROVISION_TOOLS_DIR   where to install (default: ~/.cache/provision-tools)
set -euo pipefail
DIR="${PROVISION_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/provision-tools}"
PRISM="$DIR/prism/node_modules/.bin/prism"
if [ ! -x "$PRISM" ]; then
  command -v npm >/dev/null 2>&1 || { echo "setup-prism: npm not found (install Node.js 18+)" >&2; exit 1; }
  echo "setup-prism: installing @stoplight/prism-cli@5 into $DIR/prism" >&2
  mkdir -p "$DIR/prism"
  npm install --silent --no-audit --no-fund --prefix "$DIR/prism" '@stoplight/prism-cli@5' >&2
fi
echo "$PRISM"
