#!/bin/sh
# CLI contract of `mamori unpack` and `mamori classify --unpack` (issue 4):
# exit codes, the dump, the JSON report, which code classify used.
#   test_unpack_cli.sh MAMORI MAMORI-TESTPACK FIXTURES KNOWN-CRASH-FILE
set -u
mamori="$1"
testpack="$2"
fx="$3"
crash="$4"
test_name=unpack
. "$(dirname "$0")/lib.sh"

pyck() { # pyck NAME FILE PYTHON-EXPR-ON-d
	if python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if ($3) else 1)" "$2" 2>/dev/null; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1)); echo "FAIL: $1: $3"; head -c 300 "$2"; echo
	fi
}

"$testpack" xor --key 4242 "$fx/pe64.exe" "$tmp/packed64.exe" >/dev/null
"$testpack" xor --key 4243 "$fx/pe32.exe" "$tmp/packed32.exe" >/dev/null

check "unpack no sample" 2 "$mamori" unpack
check "unpack help" 0 "$mamori" unpack --help
has "unpack help names exit codes" "$tmp/out" "Exit:"
check "unpack bad option" 2 "$mamori" unpack --frobnicate "$tmp/packed64.exe"
check "unpack bad number" 2 "$mamori" unpack --max-insns lots "$tmp/packed64.exe"
check "unpack missing file" 1 "$mamori" unpack "$tmp/none.exe"
printf 'MZ but nothing else' >"$tmp/bad.exe"
check "unpack malformed" 3 "$mamori" unpack "$tmp/bad.exe"

check "unpack pe64" 0 "$mamori" unpack "$tmp/packed64.exe" -o "$tmp/dump64.exe"
has "unpack summary status" "$tmp/out" "status     unpacked"
has "unpack summary dump" "$tmp/out" "dump64.exe"
check "dump parses" 0 "$mamori" info --compact "$tmp/dump64.exe"
pyck "dump entry" "$tmp/out" 'd["entry"] - d["image_base"] == 0x14d0'
check "unpack pe32 json" 0 "$mamori" unpack --json "$tmp/packed32.exe" -o "$tmp/dump32.exe"
pyck "report keys" "$tmp/out" 'd["status"] == "unpacked" and isinstance(d["oep"], int) and d["layers"] and "api_calls" in d and d["isolated"] is True'
check "unpack in process" 0 "$mamori" unpack --json --in-process "$tmp/packed32.exe"
pyck "report in process" "$tmp/out" 'd["status"] == "unpacked" and d["isolated"] is False'

check "unpack not packed" 0 "$mamori" unpack --json "$fx/pe64.exe" -o "$tmp/nodump.exe"
pyck "not packed status" "$tmp/out" 'd["status"] == "not_packed" and d["oep"] is None and d["dump"] is None'
if [ -e "$tmp/nodump.exe" ]; then fail=$((fail + 1)); echo "FAIL: not_packed wrote a dump"; else pass=$((pass + 1)); fi

check "unpack limit" 5 "$mamori" unpack --json --max-insns 1000 "$tmp/packed64.exe"
pyck "limit status" "$tmp/out" 'd["status"] == "limit" and "insns" in d["limits_hit"]'

check "unpack crash isolated" 1 "$mamori" unpack --json "$crash"
pyck "crash reported" "$tmp/out" 'd["status"] == "error" and d["error"].startswith("emulator crashed: signal")'

mkdir -p "$tmp/in"
cp "$fx/pe64.exe" "$tmp/packed64.exe" "$tmp/packed32.exe" "$tmp/in/"
check "classify unpack auto" 0 "$mamori" classify -q --db "$tmp/m.db" --out "$tmp/c1" "$tmp/in"
pyck "classify code per sample" "$tmp/c1/clusters.json" 'sorted((s["path"].rsplit("/",1)[1], s["code"], s["unpack"]) for s in d["samples"]) == [("packed32.exe","unpacked","unpacked"),("packed64.exe","unpacked","unpacked"),("pe64.exe","file",None)]'
pyck "classify packed joins original" "$tmp/c1/clusters.json" 'len({s["cluster"] for s in d["samples"] if "64" in s["path"]}) == 1'
pyck "stats unpack counts" "$tmp/c1/stats.json" 'd["unpack"]["mode"] == "auto" and d["unpack"]["code_unpacked"] == 2 and d["unpack"]["unpacked"] == 2'
check "classify unpack cached" 0 "$mamori" classify -q --db "$tmp/m.db" --out "$tmp/c2" "$tmp/in"
pyck "classify cached code" "$tmp/c2/clusters.json" 'sum(s["code"] == "unpacked" for s in d["samples"]) == 2'
check "classify unpack never" 0 "$mamori" classify -q --unpack never --db "$tmp/m.db" --out "$tmp/c3" "$tmp/in"
pyck "classify never uses files" "$tmp/c3/clusters.json" 'all(s["code"] == "file" and s["unpack"] is None for s in d["samples"])'
check "classify bad unpack mode" 2 "$mamori" classify --unpack sometimes "$tmp/in"

# The 64-bit dumps run under Wine like the original (the dump is taken at
# the OEP, imports rebuilt). Only our own fixtures run, in a private prefix;
# skipped without wine64.
wine=/usr/lib/wine/wine64
if [ -x "$wine" ]; then
	export WINEPREFIX="$tmp/wineprefix" WINEDEBUG=-all
	mkdir -p "$tmp/run"
	cp "$fx/pe64.exe" "$tmp/run/prog.exe"
	# The first start creates the prefix and does not run the program reliably.
	timeout 120 "$wine" "$tmp/run/prog.exe" >/dev/null 2>&1
	expected=$(timeout 120 "$wine" "$tmp/run/prog.exe" ab cd 2>/dev/null)
	for t in xor lz nested antiemu; do
		"$testpack" $t --key 777 "$fx/pe64.exe" "$tmp/$t.exe" >/dev/null
		check "unpack $t for wine" 0 "$mamori" unpack "$tmp/$t.exe" -o "$tmp/run/prog.exe"
		got=$(timeout 120 "$wine" "$tmp/run/prog.exe" ab cd 2>/dev/null)
		if [ -n "$expected" ] && [ "$got" = "$expected" ]; then
			pass=$((pass + 1))
		else
			fail=$((fail + 1)); echo "FAIL: $t dump under wine64 printed '$got', the original '$expected'"
		fi
	done
else
	echo "skip: no $wine, dumps not run"
fi

finish
