# shellcheck shell=sh
# The remote command (issue 12): unpacks the upload from stdin into a private staging dir,
# runs the runner, cleans up. Sent as ONE line (`sh -c '<the last line of this file>'`) so any
# login shell (tcsh, fish) passes it to sh intact. Exit statuses of its own, decoded only in
# remote.rs (`RemoteExit`): 97 no staging dir (mktemp), 98 unpacking failed (tar).
umask 077; st=$(mktemp -d "${TMPDIR:-/tmp}/provision.XXXXXX") || exit 97; if tar -x -m -f - -C "$st"; then sh "$st/run.sh" login "$st"; rc=$?; else rc=98; fi; rm -rf "$st"; exit $rc
