#!/bin/sh
# CLI contract tests: exit codes, messages and output formats of `mamori`.
#   test_cli.sh MAMORI FIXTURES
set -u
mamori="$1"
fx="$2"
test_name=cli
. "$(dirname "$0")/lib.sh"

is_json() { # is_json NAME FILE
	if python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$2" 2>/dev/null; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1)); echo "FAIL: $1: not JSON"; head -c 300 "$2"
	fi
}

check "no command" 2 "$mamori"
check "unknown command" 2 "$mamori" frobnicate
check "help" 0 "$mamori" --help
has "help lists classify" "$tmp/out" classify

check "info pe64" 0 "$mamori" info "$fx/pe64.exe"
is_json "info pe64" "$tmp/out"
has "info pe64 format" "$tmp/out" 'pe32+'
check "info elf32" 0 "$mamori" info "$fx/elf32"
is_json "info elf32" "$tmp/out"
printf 'MZ but nothing else' >"$tmp/bad.exe"
check "info malformed" 3 "$mamori" info "$tmp/bad.exe"
has "info malformed names file" "$tmp/err" bad.exe
check "info missing" 1 "$mamori" info "$tmp/does-not-exist"
check "info no file" 2 "$mamori" info

check "disasm json" 0 "$mamori" disasm --json "$fx/pe32.exe"
is_json "disasm json" "$tmp/out"
check "disasm text" 0 "$mamori" disasm "$fx/elf64"
has "disasm text has a call" "$tmp/out" call
check "disasm malformed" 3 "$mamori" disasm "$tmp/bad.exe"

check "compare same" 0 "$mamori" compare --json "$fx/pe64.exe" "$fx/pe64.exe"
is_json "compare json" "$tmp/out"
if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if abs(d["similarity"]-1)<1e-9 and d["changed"]==[] else 1)' "$tmp/out"; then
	pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: compare same: similarity is not 1"; fi
check "compare different" 0 "$mamori" compare --json "$fx/pe64.exe" "$fx/pe64-stripped.exe"
if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if 0<d["similarity"]<1 and d["shared"] and d["changed"] else 1)' "$tmp/out"; then
	pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: compare different: bad similarity/regions"; fi
check "compare text" 0 "$mamori" compare "$fx/pe32.exe" "$fx/pe32.dll"
has "compare text similarity" "$tmp/out" "imilarity"
check "compare one arg" 2 "$mamori" compare "$fx/pe64.exe"

mkdir -p "$tmp/in"
cp "$fx/pe64.exe" "$fx/pe32.exe" "$fx/elf64" "$tmp/in/"
check "classify no path" 2 "$mamori" classify
check "classify bad threshold" 2 "$mamori" classify --threshold abc "$tmp/in"
check "classify bad linkage" 2 "$mamori" classify --linkage median "$tmp/in"
check "classify ok" 0 "$mamori" classify --db "$tmp/m.db" --out "$tmp/out1" "$tmp/in"
has "classify table" "$tmp/out" representative
is_json "clusters.json" "$tmp/out1/clusters.json"
is_json "stats.json" "$tmp/out1/stats.json"
has "svg" "$tmp/out1/dendrogram.svg" '<svg'
printf 'garbage' >"$tmp/in/garbage.exe"
check "classify partial" 4 "$mamori" classify --db "$tmp/m.db" --out "$tmp/out2" --linkage complete "$tmp/in"
has "classify reports bad sample" "$tmp/err" garbage.exe

finish
