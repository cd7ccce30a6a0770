#!/bin/sh
# Lab helper for the containment tests (tests/contain/lab.c and e2e.sh).
#
#   lab.sh list    what test runs left behind (namespaces, blackhole routes)
#   lab.sh clean   remove what belongs to test processes that no longer run
#
# The tests clean up after themselves, also on failure and on SIGTERM; only
# a SIGKILL (or a power cut) can leave something behind, and this removes
# it. A test run names its namespaces "mamori-t<pid in 6 hex digits>..." and
# its blackhole routes use metric 4200000 + pid % 100000, so a leftover can
# be told from a run in progress.
set -eu

alive() { [ -d "/proc/$1" ]; }

namespaces() {
	ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^mamori-t[0-9a-f]{6}' || true
}

blackholes() {
	ip route show type blackhole 2>/dev/null |
		awk '/^blackhole (198\.51\.100\.0|203\.0\.113\.0)\/24/ {
			for (i = 1; i <= NF; i++) if ($i == "metric" && $(i+1) >= 4200000 && $(i+1) < 4300000) print $2, $(i+1)
		}'
}

case "${1:-list}" in
list)
	namespaces
	blackholes | sed 's/^/blackhole /'
	;;
clean)
	for ns in $(namespaces); do
		pid=$(printf '%d' "0x$(echo "$ns" | cut -c9-14)")
		if ! alive "$pid"; then
			ip netns del "$ns" && echo "removed namespace $ns"
		fi
	done
	blackholes | while read -r dst metric; do
		# The metric keeps only pid % 100000: remove the route when no
		# process with such a pid runs (any test, or mamori-using script).
		in_use=0
		for d in /proc/[0-9]*; do
			p=${d#/proc/}
			[ $((4200000 + p % 100000)) -eq "$metric" ] && in_use=1
		done
		if [ "$in_use" -eq 0 ]; then
			ip route del blackhole "$dst" metric "$metric" && echo "removed blackhole $dst metric $metric"
		fi
	done
	;;
*)
	echo "usage: $0 list|clean" >&2
	exit 2
	;;
esac
