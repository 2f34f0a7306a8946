#!/bin/sh
# provision-template-type: template-string
# Install git and give root a system-wide identity.
set -eu
export DEBIAN_FRONTEND=noninteractive
command -v git >/dev/null 2>&1 || { apt-get update -q && apt-get install -q -y --no-install-recommends git ca-certificates; }
git config --system user.name "$git_user_name"
git config --system user.email "$git_user_email"
git --version
