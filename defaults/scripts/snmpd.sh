#!/bin/sh
# provision-template-type: format-string
# net-snmp agent listening on all addresses, read-only for one source.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -q -y --no-install-recommends snmpd
cat > /etc/snmp/snmpd.conf.d/provision.conf <<CONF
agentaddress udp:161,udp6:[::1]:161
rocommunity {snmp_community} {snmp_allow}
sysName {node_name}
CONF
if [ -d /run/systemd/system ]; then systemctl restart snmpd; else service snmpd restart; fi
