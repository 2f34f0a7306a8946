#!/bin/sh
# Tools for working on the node by hand.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -q -y --no-install-recommends emacs-nox screen tmux vim-tiny htop curl jq less
