# The init of an isolated local node (see isolate.rs). Run by
#   unshare --mount --uts --ipc --pid --fork --propagation private sh NODE_DIR/launch.sh \
#       NODE_DIR NAME ADDRESS HIDE_DIR SSHD SETENV
# as PID 1 of fresh mount, PID, UTS and IPC namespaces; stdout and stderr go to sshd.log.
# Builds the node's root (the host's / seen through an overlay whose upper layer is in
# NODE_DIR/fs), pivots into it and becomes the node's sshd.
set -eu
D=$1 NAME=$2 ADDR=$3 HIDE=$4 SSHD=$5 SETENV=$6
# Our pid as the host sees it (/proc is still the host's): the pid destroy-node signals.
# `read` is a shell builtin, so /proc/self is this shell, which then execs sshd.
read -r pid _ </proc/self/stat
echo "$pid" >"$D/sshd.pid"
F=$D/fs R=$D/fs/merged
mount -t overlay overlay -o "lowerdir=/,upperdir=$F/upper,workdir=$F/work" "$R"
mount --rbind /dev "$R/dev"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys" ||
    { mount --rbind /sys "$R/sys" && mount -o remount,bind,ro "$R/sys"; }
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/tmp"
# A resolv.conf that links into the host's /run would dangle once /run is private.
if [ -L "$R/etc/resolv.conf" ]; then
    rm -f "$R/etc/resolv.conf"
    cat /etc/resolv.conf >"$R/etc/resolv.conf" 2>/dev/null || true
fi
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$R/run"
mkdir -p "$R/run/sshd" "$R/run/lock"
mount --bind "$F/root" "$R/root"
# Other nodes' state (host keys, layers) stays out of sight when the lower layer shows it.
if [ -d "$R$HIDE" ]; then mount -t tmpfs -o mode=700 tmpfs "$R$HIDE"; fi
# A machine of its own: its own host key and sshd_config, not the host's.
rm -f "$R"/etc/ssh/ssh_host_*
mkdir -p "$R/etc/ssh"
cp "$D/ssh_host_ed25519_key" "$D/ssh_host_ed25519_key.pub" "$D/sshd_config" "$R/etc/ssh/"
printf '%s\n' "$NAME" >"$R/etc/hostname"
printf '%s\t%s\n' "$ADDR" "$NAME" >>"$R/etc/hosts"
printf '%s' "$NAME" >/proc/sys/kernel/hostname
cd "$R"
pivot_root . .
umount -l .
cd /
exec "$SSHD" -D -e -o "$SETENV" -f /etc/ssh/sshd_config
