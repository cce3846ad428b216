#!/usr/bin/env bash
# Installs what the test suite needs when it is missing. Safe to run repeatedly.
# The end-to-end tests drive the real server with sipp (Debian package sip-tester)
# and create loopback-only network namespaces with iproute2, and attack it with
# the sipvicious tools (svcrack, svmap, svwar): all are required.
# The interop tests drive real phones, baresip (baresip-core) and linphonec
# (linphone-cli): installed when the archive has them; where it does not, those
# tests skip and say so.
set -euo pipefail

need=()
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v svcrack >/dev/null 2>&1 || need+=(sipvicious)
phones=()
command -v baresip >/dev/null 2>&1 || phones+=(baresip-core)
command -v linphonec >/dev/null 2>&1 || phones+=(linphone-cli)

if [ ${#need[@]} -eq 0 ] && [ ${#phones[@]} -eq 0 ]; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	if [ ${#need[@]} -ne 0 ]; then
		echo "test-deps: missing ${need[*]} ${phones[*]}; run 'sudo apt-get install ${need[*]} ${phones[*]}' or run make test as root" >&2
		exit 1
	fi
	echo "test-deps: ${phones[*]} not installed, the phone interop tests will skip; 'sudo apt-get install ${phones[*]}' to run them" >&2
	exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The phones' GUIs and recommended extras are not needed.
apt_install() { apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "$@" >/dev/null; }
if [ ${#need[@]} -ne 0 ]; then
	echo "test-deps: installing ${need[*]}"
	apt_install "${need[@]}"
fi
for p in "${phones[@]}"; do
	echo "test-deps: installing $p"
	apt_install "$p" || echo "test-deps: $p cannot be installed here; the tests that use it will skip" >&2
done
