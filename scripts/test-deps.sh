#!/usr/bin/env bash
# Installs what the test suite needs when it is missing. Safe to run repeatedly.
# The end-to-end tests drive the real server with sipp (Debian package sip-tester)
# and create loopback-only network namespaces with iproute2: both are required.
# The interop tests drive real phones, baresip (baresip-core) and linphonec
# (linphone-cli): installed when the archive has them; where it does not, those
# tests skip and say so. The scanner tests run SIPVicious (sipvicious) against
# the server inside a loopback-only namespace: installed when missing, skipped
# where it cannot be. The store's tests run against a PostgreSQL and a MariaDB
# server they start themselves (from Debian's postgresql and mariadb-server
# packages, in a temporary directory): installed as root; without root they
# skip and say so.
# The HEP capture test decodes what the server sends with
# sngrep (its HEP listener) and reads the result with tshark; the monitoring
# test validates the Prometheus alert rules with promtool (Debian package
# prometheus): all three are required.
# The media relay tests start Debian's rtpengine (rtpengine-daemon) in
# userspace mode on loopback: required. The browser tests drive Debian's
# headless chromium: required.
# make bench-short compares Switchboard's CPU per relayed call with Kamailio's
# (kamailio, and kamailio-sqlite-modules for the registrar configurations):
# installed as root; without it bench-short measures Switchboard alone.
# headless chromium: required. The registrar's Redis sharing and
# the three-node anycast test start their own redis-server (Debian package
# redis-server) on a loopback port in a temporary directory: required.
# The shell completion test runs the script `switchboard completion zsh`
# prints in zsh: required.
set -euo pipefail

need=()
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# initdb is not in PATH on Debian: it lives in /usr/lib/postgresql/<version>/bin.
pg_installed() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1; }
my_installed() { command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; }
as_root=()
pg_installed || as_root+=(postgresql)
my_installed || as_root+=(mariadb-server)
command -v kamailio >/dev/null 2>&1 || [ -x /usr/sbin/kamailio ] || as_root+=(kamailio)
[ -e /usr/lib/x86_64-linux-gnu/kamailio/modules/db_sqlite.so ] || compgen -G '/usr/lib/*/kamailio/modules/db_sqlite.so' >/dev/null || as_root+=(kamailio-sqlite-modules)
command -v tshark >/dev/null 2>&1 || need+=(tshark)
command -v sngrep >/dev/null 2>&1 || need+=(sngrep)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v zsh >/dev/null 2>&1 || need+=(zsh)
command -v rtpengine >/dev/null 2>&1 || need+=(rtpengine-daemon)
command -v chromium >/dev/null 2>&1 || need+=(chromium) # browser tests: the web panel, WebRTC (JsSIP over WSS)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
optional=()
command -v baresip >/dev/null 2>&1 || optional+=(baresip-core)
command -v linphonec >/dev/null 2>&1 || optional+=(linphone-cli)
command -v svmap >/dev/null 2>&1 || optional+=(sipvicious)

if [ ${#need[@]} -eq 0 ] && [ ${#as_root[@]} -eq 0 ] && [ ${#optional[@]} -eq 0 ]; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	if [ ${#need[@]} -ne 0 ]; then
		echo "test-deps: missing ${need[*]} ${as_root[*]} ${optional[*]}; run 'sudo apt-get install ${need[*]} ${as_root[*]} ${optional[*]}' or run make test as root" >&2
		exit 1
	fi
	echo "test-deps: ${as_root[*]} ${optional[*]} not installed, the tests that use them will skip; 'sudo apt-get install ${as_root[*]} ${optional[*]}' to run them" >&2
	exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The phones' GUIs and recommended extras are not needed.
apt_install() { apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "$@" >/dev/null; }
need+=("${as_root[@]}")
if [ ${#need[@]} -ne 0 ]; then
	echo "test-deps: installing ${need[*]}"
	apt_install "${need[@]}"
fi
# The packages' own servers (postgresql@<version>-main, mariadb) are not
# used: the tests start theirs.
if [ ${#as_root[@]} -ne 0 ] && ! pg_installed; then
	echo "test-deps: postgresql installed but no initdb found" >&2
	exit 1
fi
if [ ${#as_root[@]} -ne 0 ] && ! my_installed; then
	echo "test-deps: mariadb-server installed but no mariadbd found" >&2
	exit 1
fi
for p in "${optional[@]}"; do
	echo "test-deps: installing $p"
	apt_install "$p" || echo "test-deps: $p cannot be installed here; the tests that use it will skip" >&2
done
