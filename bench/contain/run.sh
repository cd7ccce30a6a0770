#!/usr/bin/env bash
# bench/contain/run.sh: the containment gateway benchmark (issue 5), behind
# `make bench-contain` (and `make bench`). Needs root: it builds network
# namespaces.
#
# In one run, against the same HTTP server in a lab "internet" namespace, it
# measures a direct path (an inmate-like namespace with a veth straight to
# the lab), the relay with on_data set, and the whole gateway: new
# connections per second (wrk), the median added time of one connection,
# bulk MB/s both ways (curl), and the packets of reflected and dropped
# classes that reached the lab (must be 0). It prints a table with PASS/FAIL
# per target and one JSON line (bench/contain/contain_bench.c does the work).
#
# usage: bench/contain/run.sh [--doc] [contain_bench options: --bulk-mib N
#        --wrk-seconds N --lat-n N --bulk-runs N]
#   --doc   also write the table into docs/benchmarks.md (section contain)
# env:   BUILD (default build)
# exit:  0 every target met, 1 a target missed, 2 set-up or tool failure
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-build}
BENCH="$ROOT/$BUILD/bench/contain/contain_bench"
DOC=0
ARGS=()
while [ $# -gt 0 ]; do
	case "$1" in
	--doc) DOC=1; shift ;;
	-h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) ARGS+=("$1"); shift ;;
	esac
done

die() { echo "bench-contain: $*" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
[ -x "$BENCH" ] || die "$BENCH not built (ninja -C $BUILD)"
for tool in wrk curl ip; do
	command -v "$tool" >/dev/null || die "$tool is missing (apt-get install wrk curl iproute2)"
done

# The tag names every namespace of this run (mamori-<tag>-*): 1..8 of [a-z0-9].
TAG=$(printf 'b%06x' $(($$ & 0xffffff)))
WORK=$(mktemp -d /tmp/mamori-bench-contain.XXXXXX)

# A second line behind the program's own cleanup: whatever namespace of
# this tag is left (a crash, a kill -9) goes, and so does the scratch folder.
cleanup() {
	local ns
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^mamori-$TAG-" || true); do
		ip netns del "$ns" 2>/dev/null || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

OUT="$WORK/table.txt"
"$BENCH" --tag "$TAG" --dir "$WORK" "${ARGS[@]}" >"$OUT"
STATUS=$?
cat "$OUT"
if [ "$DOC" -eq 1 ] && [ -s "$OUT" ]; then
	{
		echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))," \
			"Linux $(uname -r), $(free -g | awk '/^Mem:/{print $2}') GiB; load average after the run:" \
			"$(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared: see the text above)."
		echo
		echo '```'
		cat "$OUT"
		echo '```'
	} | "$ROOT/scripts/doc-section.py" contain "$ROOT/docs/benchmarks.md" "bench/contain/run.sh --doc" >/dev/null
fi
exit $STATUS
