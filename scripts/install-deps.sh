#!/bin/sh
# Install what mamori needs from Debian 12's packages. Idempotent: it asks
# dpkg first and runs apt-get only when something is missing.
#
#   scripts/install-deps.sh [build|corpus|bench|fuzz|all]...   (default: build)
#
# build  : compiler, Meson, libraries, cmocka, objdump, wine64 (tests: the packed 64-bit test
#          programs run under wine64, our own programs only), and the containment gateway's
#          libraries and real peers (iptables-nft, ngircd, dnsmasq, swaks, hping3, tshark;
#          they run only inside network namespaces the tests create)
# corpus : mingw-w64 cross compilers and dpkg-dev (make corpus, make run)
# bench  : ssdeep, TLSH and libfuzzy (make bench baselines), wrk (the gateway benchmark)
# fuzz   : clang with libFuzzer (make fuzz)
set -eu

build="gcc g++ make pkg-config meson ninja-build binutils libzydis-dev libjansson-dev libsqlite3-dev
 libssl-dev libcmocka-dev libxml2-utils python3 libfuzzy-dev libtlsh-dev libunicorn-dev wine64
 iproute2 iptables libmnl-dev libnetfilter-queue-dev libpcap-dev ngircd dnsmasq-base swaks hping3 iputils-ping tshark
 curl bind9-dnsutils util-linux procps jq"
corpus="gcc make tcl gcc-mingw-w64-i686 gcc-mingw-w64-x86-64 binutils-mingw-w64 dpkg-dev python3"
bench="ssdeep tlsh-tools libfuzzy-dev time wrk"
fuzz="clang libfuzzer-14-dev libclang-rt-14-dev"
lint="clang-format clang-tidy"

want=""
[ $# -eq 0 ] && set -- build
for group in "$@"; do
	case "$group" in
	build) want="$want $build" ;;
	corpus) want="$want $corpus" ;;
	bench) want="$want $bench" ;;
	fuzz) want="$want $fuzz" ;;
	lint) want="$want $lint" ;;
	all) want="$want $build $corpus $bench $fuzz $lint" ;;
	*) echo "install-deps: unknown group '$group'" >&2; exit 2 ;;
	esac
done

missing=""
for p in $want; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		case " $missing " in *" $p "*) ;; *) missing="$missing $p" ;; esac
	fi
done
[ -z "$missing" ] && exit 0

echo "install-deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing >/dev/null
