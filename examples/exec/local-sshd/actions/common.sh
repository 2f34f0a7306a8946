# Shared by the local-sshd actions (sourced, not run). POSIX sh.
# A node is a directory $STATE/ID holding: name, tags (key=value lines), authorized_keys,
# host_key(.pub), sshd_config, sshd.log, sshd.pid, port.

# shellcheck disable=SC2034 # used by the actions that source this
STATE=${LOCAL_SSHD_STATE:-${XDG_STATE_HOME:-$HOME/.local/state}/provision-local-sshd}

# json_str TEXT: TEXT as a JSON string (backslashes, quotes and control characters escaped).
json_str() {
  printf '%s' "$1" | awk 'BEGIN { ORS = ""; print "\"" }
    NR > 1 { print "\\n" }
    { gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); gsub(/\t/, "\\t"); gsub(/\r/, "\\r"); print }
    END { print "\"" }'
}

# sshd_pid DIR: the node's sshd pid when it is alive, else nothing.
sshd_pid() {
  [ -f "$1/sshd.pid" ] || return 0
  pid=$(cat "$1/sshd.pid" 2>/dev/null) || return 0
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
  return 0
}

# node_json DIR: the node as the JSON object provision reads.
node_json() {
  d=$1
  id=$(basename "$d")
  name=$(cat "$d/name" 2>/dev/null || echo "$id")
  if [ -n "$(sshd_pid "$d")" ]; then state=running
  elif [ -f "$d/port" ]; then state=stopped
  else state=pending
  fi
  port=$(cat "$d/port" 2>/dev/null || echo 22)
  host_key=$(awk '{ print $1, $2 }' "$d/host_key.pub" 2>/dev/null)
  tags=""
  if [ -f "$d/tags" ]; then
    while IFS= read -r line; do
      [ -n "$line" ] || continue
      k=${line%%=*}; v=${line#*=}
      tags="$tags${tags:+, }$(json_str "$k"): $(json_str "$v")"
    done < "$d/tags"
  fi
  printf '{"id": %s, "name": %s, "state": "%s", "public_ip": "127.0.0.1", "ssh_port": %s, "ssh_user": %s' \
    "$(json_str "$id")" "$(json_str "$name")" "$state" "$port" "$(json_str "$(id -un)")"
  [ -z "$host_key" ] || printf ', "host_key": %s' "$(json_str "$host_key")"
  printf ', "tags": {%s}}' "$tags"
}
