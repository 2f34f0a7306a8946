#!/usr/bin/env bash
# Installs moto (PyPI moto[server] 5.x), the stateful EC2 Query API the EC2 driver's tests run
# against on loopback, into a venv in a cache directory when it is missing. Prints the path of
# the moto_server executable on stdout. Idempotent; quiet when already installed.
#   PROVISION_TOOLS_DIR   where to install (default: ~/.cache/provision-tools)
set -euo pipefail
DIR="${PROVISION_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/provision-tools}"
VENV="$DIR/moto"
MOTO="$VENV/bin/moto_server"
if [ ! -x "$MOTO" ]; then
  command -v python3 >/dev/null 2>&1 || { echo "setup-moto: python3 not found" >&2; exit 1; }
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    echo "setup-moto: installing python3-venv" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
  echo "setup-moto: installing moto[server] 5.x into $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5,<6' >&2
fi
echo "$MOTO"
