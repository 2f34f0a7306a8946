#!/bin/sh
# provision-template-type: format-string
# Set the timezone and enable NTP time sync where systemd runs.
set -eu
tz="{timezone}"
if [ ! -e "/usr/share/zoneinfo/$tz" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -q -y tzdata
fi
ln -sf "/usr/share/zoneinfo/$tz" /etc/localtime
echo "$tz" > /etc/timezone
if command -v timedatectl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  timedatectl set-ntp true || true
fi
echo "timezone: $(cat /etc/timezone)"
