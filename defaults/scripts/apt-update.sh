#!/bin/sh
# Refresh the package index and apply pending upgrades, without prompts.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get -q -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold upgrade
