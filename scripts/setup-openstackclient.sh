#!/usr/bin/env bash
# Installs the official OpenStack command-line client (PyPI python-openstackclient) into a venv
# under the tools cache when it is missing: the OpenStack fake's test runs it against the fake to
# prove the fake speaks the real API. Prints the path of the `openstack` executable on stdout.
# Idempotent; quiet when already installed.
#   PROVISION_TOOLS_DIR   where to install (default: ~/.cache/provision-tools)
set -euo pipefail
DIR="${PROVISION_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/provision-tools}"
VENV="$DIR/openstackclient"
OS="$VENV/bin/openstack"
if [ ! -x "$OS" ]; then
  command -v python3 >/dev/null 2>&1 || { echo "setup-openstackclient: python3 not found" >&2; exit 1; }
  echo "setup-openstackclient: installing python-openstackclient into $VENV" >&2
  mkdir -p "$DIR"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'python-openstackclient>=6' >&2
fi
echo "$OS"
