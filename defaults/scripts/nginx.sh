#!/bin/sh
# Install nginx with the status page from files/, check the config, and (re)start it.
set -eu
export DEBIAN_FRONTEND=noninteractive
command -v nginx >/dev/null 2>&1 || { apt-get update -q && apt-get install -q -y --no-install-recommends nginx; }
nginx -t
if [ -d /run/systemd/system ]; then systemctl enable --now nginx && systemctl reload nginx; else nginx -s reload 2>/dev/null || nginx; fi
