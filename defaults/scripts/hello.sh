#!/bin/sh
# provision-template-type: template-string
# Quick-start bundle: proves files arrived and scripts run with their variables.
set -eu
echo "hello from $node_name (provider ${provision.provider})"
echo "hostname: $(hostname)"
echo "kernel:   $(uname -sr)"
cat /tmp/provision-hello/hello.txt
