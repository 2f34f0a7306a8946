# shellcheck shell=sh
# provision runner (issue 12): shipped in the upload as run.sh and run by unpack.sh as
#   sh run.sh login STAGING        (as the login user)
# which appends the login user's keys, then re-runs itself as root (directly, or through
# `sudo -n`; as the login user when root is unreachable) as
#   env LK=.. RK=.. SD=.. ROOT=.. sh run.sh root STAGING
# to append root's keys, move the files into place, place the scripts and run them.
# Settings come as named variables from vars.sh (generated, in the upload):
#   NONCE KEEP_GOING REMOVE_SCRIPTS SCRIPT_TIMEOUT LOGIN_KEYS ROOT_KEYS SCRIPT_DIR USER_SCRIPT_DIR
#   CLOUD_INIT_WAIT (seconds; 0: do not wait for cloud-init)
# plan.sh (generated) calls notdir/stagefiles/haveperl/renameall/movein/unstage/place/cloudinit/
# run.
# Steps are framed by markers, `NONCE start I`, `NONCE end I STATUS`, `NONCE done` (and
# `NONCE note WHAT` for progress), each at the
# end of a line on both stdout and stderr; remote.rs's Demux reads them.
mode=$1; st=$2
# shellcheck source=/dev/null
. "$st/vars.sh"
mark() { printf '%s %s\n' "$NONCE" "$*"; printf '%s %s\n' "$NONCE" "$*" >&2; }
abort() { mark end "$1" "${2:-1}"; mark 'done'; exit 0; }
# Expands a leading ~/ (the login user's home) or ~root/ (root's home, $RH).
xp() {
  # shellcheck disable=SC2088
  case $1 in
    '~/'*) printf '%s/%s' "$HOME" "${1#??}" ;;
    '~root/'*) printf '%s/%s' "$RH" "${1#??????}" ;;
    *) printf '%s' "$1" ;;
  esac
}
addkeys() {
  f=$1; d=$(dirname "$f")
  (umask 077; mkdir -p "$d") && chmod 700 "$d" || return 1
  [ -e "$f" ] || : > "$f" || return 1
  chmod 600 "$f" || return 1
  if [ -s "$f" ] && [ -n "$(tail -c 1 "$f")" ]; then echo >> "$f" || return 1; fi
  while read -r blob line; do
    [ -n "$blob" ] || continue
    grep -qF -e "$blob" "$f" || printf '%s\n' "$line" >> "$f" || return 1
  done < "$st/keys"
}
# Removes every staging dir with one rm (a process per directory costs ms each).
unstage() {
  [ -s "$st/stages" ] || return 0
  set --
  while IFS= read -r sd; do set -- "$@" "$sd"; done < "$st/stages"
  rm -rf -- "$@"
  return 0
}
# The mount point of $1's filesystem when it has (almost) no space left.
full() { df -P "$1" 2>/dev/null | awk 'NR == 2 && $4 < 16 { print $6 }'; }
# files.tar is the rest of stdin (after the section unpack.sh read): unpacked while it arrives.
stagefiles() {
  (umask 022; tar -x -p -m --no-same-owner -f - -C /) && return 0
  echo "provision: cannot unpack the files on the node" >&2
  while read -r t; do
    d=${t%/*}; d=${d:-/}
    if [ ! -d "$d" ]; then echo "provision: cannot write $t: cannot create directory $d" >&2
    elif m=$(full "$d") && [ -n "$m" ]; then echo "provision: cannot write $t: No space left on device ($m is full)" >&2
    fi
  done < "$st/targets"
  unstage
  [ "$ROOT" = 1 ] || echo "provision: $WHY" >&2
  return 1
}
# The targets come as arguments (plan.sh, in chunks): `read` reads a byte per system call.
# They are kept in $st/targets for stagefiles' diagnosis.
notdir() {
  printf '%s\n' "$@" >> "$st/targets"
  for t in "$@"; do
    if [ -d "$t" ] && [ ! -L "$t" ]; then echo "provision: cannot write $t: it is a directory" >&2; return 1; fi
  done
}
# Where perl is (Debian's and Ubuntu's perl-base is essential): every staged file renamed into
# place by one process, from "$st/renames" (per target directory: DIR NUL NAME NUL ... NUL; each
# staged at DIR/.NONCE/NAME). Elsewhere plan.sh calls movein DIR NAME..., one mv per directory.
haveperl() { command -v perl >/dev/null 2>&1; }
renameall() {
  # shellcheck disable=SC2016
  perl -e '$n = shift; $/ = "\0"; while (defined($r = <STDIN>)) { chomp $r; if (!defined $d) { ($d = $r) =~ s{/+$}{}; next } if ($r eq "") { undef $d; next } rename("$d/.$n/$r", "$d/$r") or do { print STDERR "provision: cannot write $d/$r: $!\n"; exit 1 } }' "$NONCE" < "$st/renames" && return 0
  unstage; return 1
}
movein() {
  d=$1; shift
  (cd "${d%/}/.$NONCE" && mv -f -- "$@" "$d/") || { unstage; echo "provision: cannot write into $d" >&2; return 1; }
}
place() {
  [ -d "$SD" ] || (umask 077; mkdir -p "$SD") || { echo "provision: cannot create $SD" >&2; return 1; }
  chmod 700 "$SD" || return 1
  printf '%s\n' "$SD/$2" >> "$st/placed"
  tmp=$SD/.provision-$NONCE-$1
  if cp "$st/s/$1" "$tmp" && chmod 700 "$tmp" && mv -f "$tmp" "$SD/$2"; then return 0; fi
  rm -f "$tmp"; echo "provision: cannot write $SD/$2" >&2; return 1
}
# Before the first script: wait (at most CLOUD_INIT_WAIT s) for cloud-init to finish, with
# `cloud-init status --wait`, or for /var/lib/cloud/instance/boot-finished when that command is
# missing or too old. Nothing is run (and nothing said) on a node without cloud-init. Errors and
# time-outs are warnings: the scripts start anyway.
nap() { sleep 0.2 2>/dev/null || sleep 1; }
cloudinit() {
  [ "$CLOUD_INIT_WAIT" != 0 ] || return 0
  ci=$(command -v cloud-init 2>/dev/null) || ci=
  [ -n "$ci" ] || [ -d /var/lib/cloud/instance ] || return 0
  [ -e /var/lib/cloud/instance/boot-finished ] && [ -z "$ci" ] && return 0
  mark note cloud-init
  end=$(( $(date +%s) + ${CLOUD_INIT_WAIT%.*} ))
  if [ -n "$ci" ]; then
    "$ci" status --wait >"$st/ci.out" 2>&1 </dev/null &
    cpid=$!
    while kill -0 "$cpid" 2>/dev/null; do
      if [ "$(date +%s)" -ge "$end" ]; then
        kill "$cpid" 2>/dev/null
        echo "provision: cloud-init still running after ${CLOUD_INIT_WAIT}s (cloud-init status --long); scripts start anyway" >&2
        return 0
      fi
      nap
    done
    wait "$cpid"; rc=$?
    [ "$rc" = 0 ] && return 0
    if ! grep -q -i -e 'unrecognized' -e 'invalid choice' -e 'usage:' "$st/ci.out"; then
      why=$("$ci" status --long 2>&1 </dev/null | grep -v -e '^status:' -e '^extended_status:' -e '^boot_status_code:' -e '^last_update:' -e '^[a-z_]*:[[:space:]]*$' -e '^[a-z_]*: *\[\]' | sed 's/^[[:space:]-]*//' | grep . | head -n 3 | tr '\n' ' ')
      echo "provision: cloud-init finished with errors (cloud-init status --long: ${why:-exit status $rc}); scripts start anyway" >&2
      return 0
    fi
  fi
  while [ ! -e /var/lib/cloud/instance/boot-finished ]; do
    if [ "$(date +%s)" -ge "$end" ]; then
      echo "provision: cloud-init not finished after ${CLOUD_INIT_WAIT}s (no /var/lib/cloud/instance/boot-finished); scripts start anyway" >&2
      return 0
    fi
    nap
  done
}
run() {
  i=$1; name=$2
  if [ "$failed" = 1 ] && [ "$KEEP_GOING" != 1 ]; then return 0; fi
  if [ "$3" = 1 ]; then set -- "$SD/$name"; else set -- sh "$SD/$name"; fi
  mark start "$i"
  # $SETSID is setsid(1) or empty: split on purpose.
  # shellcheck disable=SC2086
  (umask 022; cd "$SD" && exec $SETSID "$@" </dev/null) &
  pid=$!; wd=
  if [ "$SCRIPT_TIMEOUT" != 0 ]; then
    # shellcheck disable=SC2016,SC2086
    $SETSID sh -c 'sleep "$1"; : > "$2"; kill -TERM -"$3" 2>/dev/null || kill -TERM "$3"; sleep 2; kill -KILL -"$3" 2>/dev/null || kill -KILL "$3"' wd "$SCRIPT_TIMEOUT" "$st/timedout.$i" "$pid" </dev/null >/dev/null 2>&1 &
    wd=$!
  fi
  wait "$pid"; rc=$?
  if [ -n "$wd" ]; then kill -TERM -"$wd" 2>/dev/null || kill -TERM "$wd" 2>/dev/null; wait "$wd" 2>/dev/null; fi
  if [ -e "$st/timedout.$i" ]; then rc=124; echo "provision: $name killed after ${SCRIPT_TIMEOUT}s (script timeout)" >&2; fi
  [ "$rc" = 0 ] || failed=1
  mark end "$i" "$rc"
}
if [ "$mode" = login ]; then
  mark start 0
  RH=~root
  # shellcheck disable=SC2088
  [ "$RH" != '~root' ] || RH=/root
  LK=$(xp "$LOGIN_KEYS"); RK=$(xp "$ROOT_KEYS"); SD=$(xp "$SCRIPT_DIR"); USD=$(xp "$USER_SCRIPT_DIR")
  WHY=
  if [ "$(id -u)" = 0 ]; then RUN=; ROOT=1
  elif sudoerr=$(sudo -n true 2>&1 </dev/null); then RUN='sudo -n'; ROOT=1
  else
    RUN=; ROOT=0; SD=$USD; me=$(id -un)
    case $sudoerr in
      *tty*) WHY="$me is not root and sudo requires a terminal (Defaults requiretty): add 'Defaults:$me !requiretty' to sudoers, or set ssh_user = \"root\"" ;;
      *password*) WHY="$me is not root and sudo needs a password: allow $me NOPASSWD in sudoers, or set ssh_user = \"root\"" ;;
      *) WHY="$me is not root and 'sudo -n' fails (${sudoerr:-no sudo}): allow $me passwordless sudo, or set ssh_user = \"root\"" ;;
    esac
    echo "provision: $WHY; root's authorized_keys not written; scripts run as $me from $SD" >&2
  fi
  addkeys "$LK" || abort 0
  # $RUN is `sudo -n` or empty: split on purpose.
  # shellcheck disable=SC2086
  exec $RUN env LK="$LK" RK="$RK" SD="$SD" ROOT="$ROOT" WHY="$WHY" sh "$st/run.sh" root "$st"
fi
if [ "$ROOT" = 1 ] && [ "$RK" != "$LK" ]; then addkeys "$RK" || abort 0; fi
mark end 0 0
mark start 1
SETSID=$(command -v setsid 2>/dev/null) || SETSID=
failed=0
# shellcheck source=/dev/null
. "$st/plan.sh"
# scripts that held secret variables do not outlive the run (unless keep_scripts = true)
if [ "$REMOVE_SCRIPTS" = 1 ] && [ -s "$st/placed" ]; then
  while read -r f; do rm -f "$f"; done < "$st/placed"
fi
mark 'done'
