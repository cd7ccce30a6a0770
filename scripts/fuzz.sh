#!/bin/sh
# Build the loaders' libFuzzer targets with clang (ASan+UBSan) and run each
# for SECONDS (default 600). New inputs go to build-fuzz/corpus-<target>
# (seeded from fuzz/corpus/<target>); crashes to build-fuzz/artifacts-<target>/.
# usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (targets: pe elf disasm emu)
set -eu
cd "$(dirname "$0")/.."
secs="${1:-600}"
[ $# -gt 0 ] && shift
targets="${*:-pe elf disasm emu}"
build=build-fuzz
if [ ! -d "$build" ]; then
	CC=clang meson setup "$build" -Dfuzzing=true -Db_sanitize=address,undefined -Db_lundef=false \
		-Dbuildtype=debugoptimized
fi
for t in $targets; do
	ninja -C "$build" -j2 "fuzz/fuzz_$t"
done
# Unicorn's own leaks are known (fuzz/lsan.supp); ours still count.
LSAN_OPTIONS="suppressions=$(pwd)/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export LSAN_OPTIONS
status=0
for t in $targets; do
	mkdir -p "$build/corpus-$t" "$build/artifacts-$t"
	echo "== fuzz_$t for ${secs}s"
	"$build/fuzz/fuzz_$t" -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix="$build/artifacts-$t/" "$build/corpus-$t" "fuzz/corpus/$t" || status=1
done
exit $status
