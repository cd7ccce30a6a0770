#!/usr/bin/env bash
# bench/disasm/run.sh: the disassembly table of `make bench` (issue 3).
#
# Runs build/bench/disasm/disasm-eval with every method (our traversal, the
# probabilistic method when built, a plain recursive traversal, objdump's
# linear sweep) on the ground truth of scripts/disasm-truth, built first
# with `scripts/disasm-truth/build.sh` when its manifest is missing, and
# prints one markdown table on stdout: precision and recall of instruction
# starts over the bytes whose truth is known, per binary class and arch, and
# throughput in MB of code per second on one core, the best of 3 runs of
# each binary (objdump: wall time of the process, its text output included).
#
# usage: bench/disasm/run.sh [--truth DIR] [--small]
# env:   DISASM_EVAL (default build/bench/disasm/disasm-eval)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TRUTH=$ROOT/corpus/disasm-truth
SMALL=()
while [ $# -gt 0 ]; do
	case "$1" in
	--truth) TRUTH=${2:?--truth needs a folder}; shift 2 ;;
	--small) SMALL=(--small); shift ;;
	-h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "disasm bench: unknown option '$1'" >&2; exit 2 ;;
	esac
done
EVAL=${DISASM_EVAL:-$ROOT/build/bench/disasm/disasm-eval}
[ -x "$EVAL" ] || { echo "disasm bench: $EVAL not built" >&2; exit 1; }
if [ ! -f "$TRUTH/manifest.csv" ]; then
	"$ROOT/scripts/disasm-truth/build.sh" --out "$TRUTH" "${SMALL[@]}" >&2
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
methods=()
for m in traversal prob recursive objdump; do
	if "$EVAL" --manifest "$TRUTH/manifest.csv" --method "$m" --repeat 3 --json >"$WORK/$m.json" 2>"$WORK/$m.err"; then
		methods+=("$m")
	elif grep -q "built without" "$WORK/$m.err"; then
		echo "disasm bench: $m not built, left out" >&2
	else
		cat "$WORK/$m.err" >&2
		exit 1
	fi
done

python3 - "$WORK" "${methods[@]}" <<'PY'
import json
import sys

work, methods = sys.argv[1], sys.argv[2:]
names = {"traversal": "mamori traversal (old)", "prob": "mamori probabilistic",
	 "recursive": "recursive traversal (Zydis)", "objdump": "objdump linear sweep"}
print("| method | class | arch | binaries | starts | precision | recall | MB/s |")
print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
for m in methods:
	with open("%s/%s.json" % (work, m)) as f:
		r = json.load(f)
	for g in r["groups"] + r["classes"]:
		print("| %s | %s | %s | %d | %d | %.3f%% | %.3f%% | %.1f%s |" % (
			names.get(m, m), g["class"], g["arch"], g["binaries"], g["tp"] + g["fn"],
			100 * g["precision"], 100 * g["recall"], g["mb_per_s"], " (process)" if m == "objdump" else ""))
PY
