#!/bin/sh
# Build the loaders' libFuzzer targets with clang (ASan+UBSan) and run each
# for SECONDS (default 600). New inputs go to build-fuzz/corpus-<target>
# (seeded from fuzz/corpus/<target>); crashes to build-fuzz/artifacts-<target>/.
# usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (targets: pe elf disasm emu proto fakesvc packet httpbody)
set -eu
cd "$(dirname "$0")/.."
secs="${1:-600}"
[ $# -gt 0 ] && shift
targets="${*:-pe elf disasm emu proto fakesvc packet httpbody}"
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
	extra=
	# Unicorn 2.0.1 aborts on some code it cannot translate (fuzz/known:
	# "tcg fatal error"); mamori survives that by running the emulator in a
	# worker process, but the in-process fuzz target cannot. So the emulator
	# target fuzzes in libFuzzer's fork mode, which goes on after a crash,
	# and every crash input is replayed below: only the known abort passes.
	[ "$t" = emu ] && extra="-fork=1 -ignore_crashes=1"
	# shellcheck disable=SC2086
	rc=0
	"$build/fuzz/fuzz_$t" -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
		$extra -artifact_prefix="$build/artifacts-$t/" "$build/corpus-$t" "fuzz/corpus/$t" || rc=$?
	# In fork mode the exit code counts the ignored crashes too: the
	# replay below decides for the emulator.
	[ "$t" = emu ] || [ "$rc" -eq 0 ] || status=1
	if [ "$t" = emu ]; then
		known=0
		for a in "$build/artifacts-$t"/crash-* "$build/artifacts-$t"/leak-* "$build/artifacts-$t"/timeout-*; do
			[ -f "$a" ] || continue
			if "$build/fuzz/fuzz_$t" "$a" 2>&1 | grep -q "tcg fatal error"; then
				known=$((known + 1))
			else
				echo "fuzz_$t: NEW finding $a" >&2
				status=1
			fi
		done
		echo "fuzz_$t: $known crash input(s) are Unicorn's known 'tcg fatal error' abort"
	fi
done
exit $status
