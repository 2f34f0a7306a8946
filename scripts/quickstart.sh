#!/usr/bin/env bash
# The README quick start: build the suite, then deploy a real node on the built-in `local`
# provider (a private sshd on loopback), list it, and destroy it. Installs openssh-server when
# it is missing, and creates ~/.ssh/id_ed25519 only if you have no SSH key at all.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-test-deps.sh
have_pub() { for p in ~/.ssh/id_ed25519.pub ~/.ssh/id_ecdsa.pub ~/.ssh/id_rsa.pub; do [ -f "$p" ] && return 0; done; return 1; }
if ! have_pub; then
  # a private key without its .pub: derive the public half (no passphrase prompt in CI)
  for k in ~/.ssh/id_ed25519 ~/.ssh/id_ecdsa ~/.ssh/id_rsa; do
    if [ -f "$k" ] && ssh-keygen -y -P '' -f "$k" > "$k.pub.tmp" 2>/dev/null; then
      mv "$k.pub.tmp" "$k.pub"; echo "quickstart: wrote $k.pub from $k" >&2; break
    fi
    rm -f "$k.pub.tmp"
  done
fi
if ! have_pub; then
  echo "quickstart: you have no SSH key; creating ~/.ssh/id_ed25519" >&2
  mkdir -p ~/.ssh && chmod 700 ~/.ssh
  ssh-keygen -q -t ed25519 -N '' -f ~/.ssh/id_ed25519 </dev/null
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
