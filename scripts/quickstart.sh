#!/usr/bin/env bash
# The README quick start: build the suite, then deploy a real node on the built-in `local`
# provider (a private sshd on loopback), list it, and destroy it. Installs openssh-server when
# it is missing, and creates ~/.ssh/id_ed25519 only if you have no SSH key at all.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-test-deps.sh
if ! ls ~/.ssh/id_ed25519.pub ~/.ssh/id_ecdsa.pub ~/.ssh/id_rsa.pub >/dev/null 2>&1; then
  echo "quickstart: you have no SSH key; creating ~/.ssh/id_ed25519" >&2
  mkdir -p ~/.ssh && chmod 700 ~/.ssh
  ssh-keygen -q -t ed25519 -N '' -f ~/.ssh/id_ed25519
fi
cargo build --release --quiet
export PATH="$PWD/target/release:$PATH"
set -x
line=$(deploy-node -b hello)
echo "$line"
node=${line%% *}
list-nodes | grep "^$node "
destroy-node "$node"
! list-nodes | grep -q "^$node "
