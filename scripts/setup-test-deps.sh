#!/usr/bin/env bash
# Installs what the tests and the quick start need when it is missing: openssh-server (sshd
# for local nodes and the test harness) and sudo (the non-root-login tests). Idempotent and
# quiet when all is present.
set -euo pipefail
need_sshd() { [ -x /usr/sbin/sshd ] || command -v sshd >/dev/null 2>&1; }
pkgs=""
need_sshd || pkgs="$pkgs openssh-server"
command -v sudo >/dev/null 2>&1 || pkgs="$pkgs sudo"
if [ -n "$pkgs" ]; then
  echo "setup: installing$pkgs" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
  # the package's own service is not wanted: local nodes start their own sshd
  $SUDO systemctl disable --now ssh >/dev/null 2>&1 || true
fi
# moto (a stateful EC2 Query API) for the EC2 driver's tests, in a venv of its own
"$(dirname "$0")/setup-moto.sh" >/dev/null
