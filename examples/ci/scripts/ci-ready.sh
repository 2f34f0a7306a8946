#!/bin/sh
# provision-template-type: template-string
# Marks the node ready for node_test.py: the node's name in /tmp/provision-ci/ready.
set -e
mkdir -p /tmp/provision-ci
echo "$node_name" > /tmp/provision-ci/ready
echo "ready: $node_name says '$app_greeting'"
