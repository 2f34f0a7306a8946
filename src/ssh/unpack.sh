# shellcheck shell=sh
# The remote command (issue 12): unpacks the upload's first section from stdin into a private
# staging dir, runs the runner, cleans up. The first section (runner, plan, keys, scripts) is a
# tar of $1 bytes: dd reads exactly that many (`iflag=count_bytes,fullblock`, GNU and BusyBox
# dd; `bs=1` where dd lacks them), because tar itself reads a pipe to its end. The rest of stdin
# is files.tar, which the runner unpacks as it arrives (issue 20). Sent as ONE line (`sh -c '<the last line of this file>'`) so any
# login shell (tcsh, fish) passes it to sh intact. Exit statuses of its own, decoded only in
# remote.rs (`RemoteExit`): 97 no staging dir (mktemp), 98 unpacking failed (tar).
umask 077; st=$(mktemp -d "${TMPDIR:-/tmp}/provision.XXXXXX") || exit 97; if { dd bs=65536 count="$1" iflag=count_bytes,fullblock 2>/dev/null || dd bs=1 count="$1" 2>/dev/null; } | tar -x -m -f - -C "$st"; then sh "$st/run.sh" login "$st"; rc=$?; else rc=98; fi; rm -rf "$st"; exit $rc
