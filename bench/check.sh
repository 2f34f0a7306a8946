#!/usr/bin/env bash
# CI check for the benchmark: it must parse and compile; it is never run by `cargo test`.
# (Running it needs root, unshare and sshd: `sudo python3 bench/run.py --self-test`.)
set -euo pipefail
cd "$(dirname "$0")"
bash -n check.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for f in *.py ansible/*.py; do
    python3 -c 'import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)' "$f" "$tmp/x.pyc"
done
python3 run.py --help >/dev/null
echo "bench: ok"
