#!/usr/bin/env bash
# The test command (README "Tests"): installs what the tests need when it is missing
# (openssh-server; Prism for the cloud-API conformance tests), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-test-deps.sh
if [ -x scripts/setup-prism.sh ]; then
  PROVISION_PRISM="$(scripts/setup-prism.sh)"
  export PROVISION_PRISM
fi
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
  cargo test --doc
else
  cargo test --no-fail-fast "$@"
fi
