#!/bin/sh
# CLI contract of `mamori contain report SESSION` (issue 5): the report
# files, the summary, the JSON on stdout, exit codes, and that strings the
# sample chose never reach the terminal as escape sequences.
#   test_contain_cli.sh MAMORI
set -u
mamori="$1"
test_name=contain
. "$(dirname "$0")/lib.sh"

s="$tmp/session"
mkdir -p "$s"
h='"sensor":"contain","subject":"s1"'
esc=$(printf '\033')
cat >"$s/events.jsonl" <<EOF2
{"time":"2026-11-26T10:00:00.000000Z",$h,"type":"dns","seq":1,"qname":"cc.example","qtype":"A","answers":["198.51.100.10"],"sinkholed":false}
{"time":"2026-11-26T10:00:00.100000Z",$h,"type":"flow_start","seq":2,"flow":1,"transport":"tcp","src":"10.66.0.2","sport":40001,"dst":"198.51.100.10","dport":6667,"proto":"irc","verdict":"forward","rule":"default:irc"}
{"time":"2026-11-26T10:00:00.200000Z",$h,"type":"irc","seq":3,"flow":1,"command":"NICK","nick":"evil\\u001b[31mred"}
{"time":"2026-11-26T10:00:00.300000Z",$h,"type":"irc","seq":4,"flow":1,"command":"JOIN","channel":"#cmd"}
{"time":"2026-11-26T10:00:01.000000Z",$h,"type":"flow_start","seq":5,"flow":2,"transport":"tcp","src":"10.66.0.2","sport":40002,"dst":"203.0.113.25","dport":25,"proto":"smtp","verdict":"reflect","rule":"default:smtp","service":"smtp-sink"}
{"time":"2026-11-26T10:00:01.500000Z",$h,"type":"smtp","seq":6,"flow":2,"from":"a@b.example","rcpt":["x@y.example","z@y.example"],"mail_subject":"hello","bytes":300}
{"time":"2026-11-26T10:00:02.000000Z",$h,"type":"flow_end","seq":7,"flow":2,"bytes_up":300,"bytes_down":200,"duration_ms":1000}
{"time":"2026-11-26T10:00:03.000000Z",$h,"type":"detect","seq":8,"kind":"flood","targets":["203.0.113.99:80"],"rate":900.0,"count":900,"window_ms":1000,"verdict":"drop"}
EOF2

check "report" 0 "$mamori" contain report "$s"
has "summary irc" "$tmp/out" "c&c irc    198.51.100.10:6667 (forward)"
has "summary channel" "$tmp/out" "#cmd"
has "summary spam" "$tmp/out" "1 messages to 2 recipients"
has "summary flood" "$tmp/out" "203.0.113.99:80"
if grep -q "$esc" "$tmp/out"; then fail=$((fail + 1)); echo "FAIL: an escape byte reached the terminal"; else pass=$((pass + 1)); fi
[ -s "$s/report.json" ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: no report.json"; }
if xmllint --noout "$s/report.svg" 2>"$tmp/xml"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: report.svg is not XML"; cat "$tmp/xml"; fi
has "svg names the C&C" "$s/report.svg" "cc.example"

check "json" 0 "$mamori" contain report --json "$s"
if python3 - "$tmp/out" <<'EOF3'
import json, sys
j = json.load(open(sys.argv[1]))
irc = [c for c in j["cnc"] if c["protocol"] == "irc"][0]
assert irc["channels"] == ["#cmd"], irc
assert j["spam"]["recipients_total"] == 2, j["spam"]
assert j["floods"][0]["targets"] == ["203.0.113.99:80"], j["floods"]
assert j["flows"]["by_verdict"] == {"forward": 1, "reflect": 1}, j["flows"]
assert [d["name"] for d in j["destinations"] if d["addr"] == "198.51.100.10"] == ["cc.example"]
EOF3
then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: report JSON content"; fi

check "missing session" 1 "$mamori" contain report "$tmp/nothing-here"
has "missing session message" "$tmp/err" "cannot open"
check "no subcommand" 2 "$mamori" contain
check "unknown subcommand" 2 "$mamori" contain frobnicate "$s"
check "unknown option" 2 "$mamori" contain report --bogus "$s"
check "help" 0 "$mamori" contain --help

finish
