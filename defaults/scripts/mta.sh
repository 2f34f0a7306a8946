#!/bin/sh
# provision-template-type: tera
# postfix for local mail (cron, alerts), optionally through a relay.
set -eu
export DEBIAN_FRONTEND=noninteractive
mailname="{% if mailname %}{{ mailname }}{% else %}{{ node_name }}{% endif %}"
echo "postfix postfix/main_mailer_type select {% if relayhost %}Satellite system{% else %}Local only{% endif %}" | debconf-set-selections
echo "postfix postfix/mailname string $mailname" | debconf-set-selections
echo "postfix postfix/relayhost string {{ relayhost }}" | debconf-set-selections
apt-get update -q
apt-get install -q -y --no-install-recommends postfix bsd-mailx
postconf -e "myhostname = $mailname" "relayhost = {{ relayhost }}" "inet_interfaces = loopback-only"
if [ -d /run/systemd/system ]; then systemctl restart postfix; else postfix reload 2>/dev/null || postfix start; fi
