#!/usr/bin/env bash
# Installs what the test suite needs when it is missing. Safe to run repeatedly.
# The end-to-end tests drive the real server with sipp (Debian package sip-tester)
# and create loopback-only network namespaces with iproute2.
set -euo pipefail

need=()
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
command -v ip >/dev/null 2>&1 || need+=(iproute2)

if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "test-deps: missing ${need[*]}; run 'sudo apt-get install ${need[*]}' or run make test as root" >&2
	exit 1
fi

echo "test-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
