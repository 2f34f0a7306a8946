#!/usr/bin/env bash
# Installs what the tests and the quick start need when it is missing: openssh-server (sshd
# for local nodes and the test harness), sudo (the non-root-login tests), shellcheck (CI lints
# the remote runner) and the compatibility matrix's nodes (tests/node_matrix.rs): dropbear-bin,
# busybox-static, tcsh, fish; jq (the exec provider examples);
# in a venv, python-openstackclient (the OpenStack fake's test). Idempotent and quiet when all is
# present.
set -euo pipefail
need_sshd() { [ -x /usr/sbin/sshd ] || command -v sshd >/dev/null 2>&1; }
pkgs=""
need_sshd || pkgs="$pkgs openssh-server"
command -v sudo >/dev/null 2>&1 || pkgs="$pkgs sudo"
# jq: the exec examples (examples/exec/) map JSON with it, and tests/deploy_exec.rs drives them
command -v jq >/dev/null 2>&1 || pkgs="$pkgs jq"
command -v shellcheck >/dev/null 2>&1 || pkgs="$pkgs shellcheck"
[ -x /usr/sbin/dropbear ] || pkgs="$pkgs dropbear-bin"
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || pkgs="$pkgs busybox-static"
command -v tcsh >/dev/null 2>&1 || pkgs="$pkgs tcsh"
command -v fish >/dev/null 2>&1 || pkgs="$pkgs fish"
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
# the official OpenStack client, which proves the OpenStack fake speaks the real API
"$(dirname "$0")/setup-openstackclient.sh" >/dev/null
# moto (a stateful EC2 Query API) for the EC2 driver's tests, in a venv of its own
"$(dirname "$0")/setup-moto.sh" >/dev/null
