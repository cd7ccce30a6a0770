#!/bin/bash
# End-to-end test of the containment gateway with real peers (issue 5,
# "Tests with real peers"): a lab "internet" namespace with ngircd as the C&C,
# dnsmasq, python3's http.server with an inert payload and an SMTP recorder;
# tshark captures everything that arrives in that namespace. The inmate runs
# our inert test bot (tests/contain/bot.c) under the real CLI
# (`mamori sandbox run --upstream-netns LAB`), and a controller script
# (lab/controller.py) gives it its orders on the IRC channel, one at a time:
# !download, !spam, !flood, !scan, !quit. Then three failure cases: the
# gateway killed with SIGKILL mid-session, malformed protocol data, and a
# storm of 3,000 connections.
#
# Usage: e2e.sh MAMORI TESTBOT   (meson passes both; root needed, else 77)
# KEEP=1 keeps the work folder (/tmp/mamori-e2e-PID) for a look afterwards.
# Needs: iproute2, ngircd, dnsmasq-base, tshark, python3, swaks, hping3, jq.
#
# Safety: everything runs inside namespaces this script creates, named
# mamori-t<pid in 6 hex digits>-net (tests/contain/lab.sh knows the scheme),
# and the sessions' own namespaces; while it runs a blackhole route for both
# TEST-NET ranges (metric 4200000 + pid % 100000) sits in the host's
# namespace. The EXIT trap (also reached on INT and TERM) stops every
# process we started, by pid, and removes every namespace and route, also
# after a failed assertion. Only SIGKILL of this script can leave anything,
# and lab.sh clean plus the sessions' net.txt files remove that.
set -u

MAMORI=${1:-}
TESTBOT=${2:-}
HERE=$(cd "$(dirname "$0")" && pwd)
LAB=$HERE/lab

if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP: needs root (network namespaces)"
	exit 77
fi
for tool in ip ngircd dnsmasq tshark python3 swaks jq sha256sum; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: $tool is not installed"
		exit 77
	fi
done
if [ ! -x "$MAMORI" ] || [ ! -x "$TESTBOT" ]; then
	echo "usage: $0 MAMORI TESTBOT" >&2
	exit 2
fi
MAMORI=$(readlink -f "$MAMORI")
TESTBOT=$(readlink -f "$TESTBOT")

PID=$$
NET=mamori-t$(printf '%06x' $((PID & 0xffffff)))-net
METRIC=$((4200000 + PID % 100000))
RANGES="198.51.100.0/24 203.0.113.0/24"
WORK=/tmp/mamori-e2e-$PID
DNS_ADDR=198.51.100.53
CC_ADDR=203.0.113.10
WEB_ADDR=203.0.113.20
SMTP_ADDR=203.0.113.25
FLOOD_ADDR=203.0.113.66
CHANNEL='#chan'
URL=http://dl.bot.example/payload.bin
LAB_PIDS=() # servers and captures, stopped at the end
SANDBOX_PIDS=()
ROUTES=0
PASS=0
FAIL=0
FAILED=()

# ------------------------------------------------------------ checks

check() { # check WHAT COMMAND...: ok when COMMAND succeeds
	local what=$1
	shift
	if "$@"; then
		PASS=$((PASS + 1))
		echo "ok   - $what"
	else
		FAIL=$((FAIL + 1))
		FAILED+=("$what")
		echo "FAIL - $what"
	fi
}

check_eq() { # check_eq WHAT EXPECTED ACTUAL
	if [ "$2" = "$3" ]; then
		PASS=$((PASS + 1))
		echo "ok   - $1 ($3)"
	else
		FAIL=$((FAIL + 1))
		FAILED+=("$1")
		echo "FAIL - $1: expected '$2', got '$3'"
	fi
}

check_ge() { # check_ge WHAT MIN ACTUAL (integers)
	if [[ $3 =~ ^[0-9]+$ ]] && [ "$3" -ge "$2" ]; then
		PASS=$((PASS + 1))
		echo "ok   - $1 ($3)"
	else
		FAIL=$((FAIL + 1))
		FAILED+=("$1")
		echo "FAIL - $1: expected at least $2, got '$3'"
	fi
}

check_lt() { # check_lt WHAT LIMIT ACTUAL (integers)
	if [[ $3 =~ ^[0-9]+$ ]] && [ "$3" -lt "$2" ]; then
		PASS=$((PASS + 1))
		echo "ok   - $1 ($3)"
	else
		FAIL=$((FAIL + 1))
		FAILED+=("$1")
		echo "FAIL - $1: expected less than $2, got '$3'"
	fi
}


note() { echo "     # $*"; }

# Packets in a capture that match a display filter; "ERR" when tshark
# fails, so that a broken filter can never pass as "zero packets".
pcount() {
	local out
	out=$(tshark -n -r "$1" -Y "$2" -T fields -e frame.number 2>/dev/null) || {
		echo ERR
		return
	}
	if [ -z "$out" ]; then
		echo 0
	else
		echo "$out" | wc -l
	fi
}

# Events of a session that a jq filter selects (over all lines, slurped).
evcount() { jq -s "[.[] | select($2)] | length" "$1/events.jsonl" 2>/dev/null || echo ERR; }

# ------------------------------------------------------------ lab

# The namespaces of a session whose `mamori sandbox run` died, from the
# net.txt it wrote (contain_session_net_record); only names of the form
# mamori-TAG-in / -gw are touched.
session_net_remove() {
	local f=$1 key val
	[ -f "$f" ] || return 0
	while IFS='=' read -r key val; do
		case "$key" in
		inmate | gateway)
			if [[ $val =~ ^mamori-[a-z0-9]{1,8}-(in|gw)$ ]] && ip netns list | grep -qw -- "$val"; then
				ip netns del "$val"
			fi
			;;
		esac
	done <"$f"
}

cleanup() {
	set +e
	trap - EXIT INT TERM
	local p
	# A sandbox run removes its own namespaces on TERM (cmd_sandbox.c).
	for p in "${SANDBOX_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${LAB_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	sleep 0.5
	for p in "${SANDBOX_PIDS[@]}" "${LAB_PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	for f in "$WORK"/*/net.txt; do session_net_remove "$f"; done
	ip netns del "$NET" 2>/dev/null
	if [ "$ROUTES" -eq 1 ]; then
		for r in $RANGES; do ip route del blackhole "$r" metric "$METRIC" 2>/dev/null; done
	fi
	if [ "${KEEP:-0}" = 1 ]; then
		echo "# kept $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

# Wait (at most $2 s) until command $3... succeeds.
wait_for() {
	local what=$1 limit=$2 i
	shift 2
	for ((i = 0; i < limit * 10; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "lab: gave up waiting for $what" >&2
	return 1
}

in_lab() { ip netns exec "$NET" "$@"; }

# Start a lab process in the background and record its pid. `ip netns exec`
# execs the command, so the pid is the server's own (not a subshell's, as
# with a function run in the background) and stopping it works.
LAST_PID=
lab_bg() { # lab_bg OUTFILE CMD...
	local out=$1
	shift
	ip netns exec "$NET" "$@" >"$out" 2>&1 &
	LAST_PID=$!
	LAB_PIDS+=("$LAST_PID")
}

lab_up() {
	mkdir -p "$WORK/lab/www" "$WORK/botout" || return 1
	ROUTES=1
	for r in $RANGES; do ip route add blackhole "$r" metric "$METRIC" || return 1; done
	ip netns add "$NET" || return 1
	# The servers' addresses sit on lo (this kernel has no dummy links);
	# our gateway's link (mm-TAG) appears here when a session starts.
	ip -n "$NET" link set lo up || return 1
	for a in $DNS_ADDR $CC_ADDR $WEB_ADDR $SMTP_ADDR $FLOOD_ADDR; do
		ip -n "$NET" addr add "$a/32" dev lo || return 1
	done

	# An inert payload: text, 256 KiB.
	yes 'mamori e2e lab payload: inert bytes, not a program' | head -c 262144 >"$WORK/lab/www/payload.bin"
	PAYLOAD_SHA=$(sha256sum "$WORK/lab/www/payload.bin" | cut -d' ' -f1)

	lab_bg "$WORK/lab/dnsmasq.out" dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces \
		--listen-address=$DNS_ADDR --port=53 --user=root --pid-file="$WORK/lab/dnsmasq.pid" \
		--address=/cc.bot.example/$CC_ADDR --address=/dl.bot.example/$WEB_ADDR \
		--log-queries --log-facility="$WORK/lab/dnsmasq.log"
	sed -e "s/@LISTEN@/$CC_ADDR/" -e "s,@DIR@,$WORK/lab," -e "s/@CHANNEL@/$CHANNEL/" \
		"$LAB/ngircd.conf.in" >"$WORK/lab/ngircd.conf"
	lab_bg "$WORK/lab/ngircd.out" ngircd --nodaemon --config "$WORK/lab/ngircd.conf"
	lab_bg "$WORK/lab/http.out" python3 -m http.server --bind $WEB_ADDR --directory "$WORK/lab/www" 80
	lab_bg "$WORK/lab/smtp.out" python3 "$LAB/smtp_recorder.py" $SMTP_ADDR 25 "$WORK/lab/smtp-record.txt"

	wait_for "ngircd" 15 in_lab "$TESTBOT" probe $CC_ADDR 6667 &&
		wait_for "http.server" 15 in_lab "$TESTBOT" probe $WEB_ADDR 80 &&
		wait_for "smtp recorder" 15 in_lab "$TESTBOT" probe $SMTP_ADDR 25 &&
		wait_for "dnsmasq" 15 in_lab "$TESTBOT" resolve cc.bot.example --dns $DNS_ADDR || return 1
	# The probes above reached the recorder: start its record afresh.
	sleep 0.3
	: >"$WORK/lab/smtp-record.txt"
}

# tshark on every interface of the lab namespace, into WORK/NAME.pcap.
capture_start() {
	PCAP=$WORK/$1.pcap
	lab_bg "$WORK/$1-tshark.txt" tshark -n -q -i any -F pcap -w "$PCAP"
	CAPTURE_PID=$LAST_PID
	wait_for "tshark" 20 grep -q "Capturing on" "$WORK/$1-tshark.txt"
}

capture_stop() {
	sleep 1 # the last packets
	# TERM, not INT: a background job of a script ignores SIGINT.
	kill -TERM "$CAPTURE_PID" 2>/dev/null
	wait "$CAPTURE_PID" 2>/dev/null
	# The pcap is complete only once tshark is gone.
	check "tshark stopped and wrote $(basename "$PCAP")" not kill -0 "$CAPTURE_PID"
}

# Our gateway's packets in the lab come from or go to its up0 link, in
# 10.67.0.0/16 (netns.h); the controller's own IRC traffic stays on lo.
GW='ip.addr==10.67.0.0/16'

# How the inmate resolves: getaddrinfo() over the resolv.conf that
# `--resolver` puts in the inmate, naming the lab's DNS server; the query
# goes through the gateway's UDP path like any other datagram.
SANDBOX_OPTS=(--resolver "$DNS_ADDR")
# A sanitizer build of the bot reserves terabytes of shadow address space:
# the sandbox's default 1 GiB address-space limit would kill it at start.
if ldd "$TESTBOT" 2>/dev/null | grep -q libasan; then
	SANDBOX_OPTS+=(--memory none)
fi

sandbox() { # sandbox NAME TIMEOUT_S -- CMD...: a session in WORK/NAME, in the background
	local name=$1 timeout=$2
	shift 3
	"$MAMORI" sandbox run --session "$WORK/$name" --upstream-netns "$NET" "${SANDBOX_OPTS[@]}" \
		--timeout "$timeout" -- "$@" >"$WORK/$name.out" 2>&1 &
	SANDBOX_PID=$!
	SANDBOX_PIDS+=("$SANDBOX_PID")
}

sandbox_wait() {
	wait "$SANDBOX_PID" 2>/dev/null
	SANDBOX_RC=$?
}

# ------------------------------------------------------------ the bot

scenario_bot() {
	echo "# the bot: DNS, IRC C&C, download, spam, flood, scan"
	local S=$WORK/bot
	capture_start bot || return 1
	lab_bg "$WORK/bot-controller.txt" python3 "$LAB/controller.py" $CC_ADDR 6667 "$CHANNEL" 120 \
		"!download $URL" "!spam" "!flood $FLOOD_ADDR" "!scan 203.0.113.100-140 445" "!quit"
	local ctl=$LAST_PID
	wait_for "controller" 15 grep -q "controller in" "$WORK/bot-controller.txt"
	sandbox bot 150 -- "$TESTBOT" bot --out "$WORK/botout" --wait 120
	sandbox_wait
	wait "$ctl"
	local ctl_rc=$?
	capture_stop

	check_eq "sandbox run ends normally" 0 "$SANDBOX_RC"
	check_eq "the bot exits 0" 0 "$(jq -s '[.[] | select(.type=="session_end")][0].exit_code' "$S/events.jsonl")"
	check_eq "the controller got every reply" 0 "$ctl_rc"
	local nick
	nick=$(awk '/^joined /{print $2; exit}' "$WORK/bot-controller.txt")
	check "the bot joined $CHANNEL (nick '$nick')" test -n "$nick"
	check "the bot reports the payload's sha256" grep -q "reply .* download .*sha256=$PAYLOAD_SHA" \
		"$WORK/bot-controller.txt"
	check "swaks ran in the inmate (exit 0)" grep -q "reply .* spam swaks=0" "$WORK/bot-controller.txt"
	note "$(grep -o 'reply .* flood.*' "$WORK/bot-controller.txt")"
	check "hping3 sent its SYN flood from the inmate (CAP_NET_RAW)" \
		grep -q "reply .* flood hping3=[01] sent=3000 " "$WORK/bot-controller.txt"
	note "$(grep -o 'reply .* scan.*' "$WORK/bot-controller.txt")"
	check "the bot resolved its C&C with getaddrinfo" \
		grep -q "resolved cc.bot.example with getaddrinfo" "$S/stdout.txt"
	note "$(grep -m1 -o 'resolved cc.bot.example .*' "$S/stdout.txt")"
	check "dns events: cc.bot.example -> $CC_ADDR, dl.bot.example -> $WEB_ADDR" \
		test "$(evcount "$S" "(.type==\"dns\" and .qname==\"cc.bot.example\" and (.answers | index(\"$CC_ADDR\"))) or (.type==\"dns\" and .qname==\"dl.bot.example\" and (.answers | index(\"$WEB_ADDR\")))")" -ge 2
	check "the saved download is the payload" \
		test "$(sha256sum <"$WORK/botout/payload.bin" | cut -d' ' -f1)" = "$PAYLOAD_SHA"

	# What went through, seen on the internet side.
	check_ge "IRC JOIN $CHANNEL reached ngircd" 1 \
		"$(pcount "$PCAP" "$GW && tcp.dstport==6667 && frame contains \"JOIN $CHANNEL\"")"
	check_ge "the HTTP GET reached the web server" 1 \
		"$(pcount "$PCAP" "$GW && http.request.uri==\"/payload.bin\"")"
	check_ge "the 200 response came back" 1 "$(pcount "$PCAP" "$GW && http.response.code==200")"
	note "DNS queries from the gateway in the lab: UDP $(pcount "$PCAP" "$GW && udp.port==53 && dns.flags.response==0"), TCP $(pcount "$PCAP" "$GW && tcp.port==53 && dns.flags.response==0")"
	# What must not have left.
	check_eq "zero SMTP packets in the lab" 0 "$(pcount "$PCAP" "tcp.port==25")"
	check_eq "zero packets to the flood target" 0 "$(pcount "$PCAP" "ip.addr==$FLOOD_ADDR")"
	check_eq "zero packets to the scanned range" 0 \
		"$(pcount "$PCAP" "ip.dst>=203.0.113.100 && ip.dst<=203.0.113.140")"
	check_eq "the lab SMTP server recorded nothing" 0 "$(stat -c %s "$WORK/lab/smtp-record.txt")"

	# The session's record.
	check_ge "irc JOIN event for $CHANNEL" 1 \
		"$(evcount "$S" ".type==\"irc\" and .command==\"JOIN\" and .channel==\"$CHANNEL\"")"
	check_ge "download event with the payload's sha256" 1 \
		"$(evcount "$S" ".type==\"download\" and .sha256==\"$PAYLOAD_SHA\" and .stored==true")"
	check "the download is in the session store" \
		sh -c "find '$S/store' -type f -exec sha256sum {} + | grep -q '^$PAYLOAD_SHA '"
	check_ge "smtp flow reflected to the sink" 1 \
		"$(evcount "$S" ".type==\"flow_start\" and .dport==25 and .verdict==\"reflect\" and .service==\"smtp-sink\"")"
	check_ge "the mail is in SESSION/mail with both recipients and the subject" 1 \
		"$(cat "$S"/mail/*.json 2>/dev/null | jq -s '[.[] | select((.rcpt | index("a@victim.example")) and (.rcpt | index("b@victim.example")) and .subject=="buy now")] | length' 2>/dev/null || echo ERR)"
	check_ge "a flood detect event names $FLOOD_ADDR" 1 \
		"$(evcount "$S" ".type==\"detect\" and .kind==\"flood\" and ([.targets[] | startswith(\"$FLOOD_ADDR\")] | any)")"
	check_eq "no flood flow forwarded" 0 \
		"$(evcount "$S" ".type==\"flow_start\" and .dst==\"$FLOOD_ADDR\" and (.verdict==\"forward\" or .verdict==\"limit\")")"
	check_ge "detect events for the scan" 1 "$(evcount "$S" ".type==\"detect\" and .kind==\"scan\"")"

	# The report.
	local R=$WORK/bot-report.json
	"$MAMORI" contain report "$S" --json >"$R"
	check_eq "mamori contain report exits 0" 0 $?
	check_eq "report: the C&C is irc at $CC_ADDR:6667" 1 \
		"$(jq "[.cnc[] | select(.protocol==\"irc\" and .server==\"$CC_ADDR:6667\")] | length" "$R")"
	check_eq "report: channel $CHANNEL and the bot's nick" true \
		"$(jq "[.cnc[] | select(.protocol==\"irc\") | ((.channels | index(\"$CHANNEL\")) != null and (.nicks | index(\"$nick\")) != null)] | any" "$R")"
	check_eq "report: the download URL with its hash" true \
		"$(jq "[.downloads[] | select(.url==\"$URL\" and .sha256==\"$PAYLOAD_SHA\")] | length == 1" "$R")"
	check_eq "report: the spam (2 recipients, the subject)" true \
		"$(jq '.spam.messages >= 1 and (.spam.recipients | index("a@victim.example")) != null and (.spam.recipients | index("b@victim.example")) != null and (.spam.subjects | index("buy now")) != null' "$R")"
	check_eq "report: the flood target $FLOOD_ADDR" true \
		"$(jq "[.floods[] | .targets[] | select(startswith(\"$FLOOD_ADDR\"))] | length > 0" "$R")"
	check_eq "report: a scan" true "$(jq '.scans | length > 0' "$R")"
}

# ------------------------------------------------------------ failure cases

# a. SIGKILL to `mamori sandbox run` while the bot sits in the channel.
scenario_kill() {
	echo "# failure a: the gateway killed mid-session"
	local S=$WORK/kill
	capture_start kill || return 1
	lab_bg "$WORK/kill-controller.txt" python3 "$LAB/controller.py" $CC_ADDR 6667 "$CHANNEL" 60
	local ctl=$LAST_PID
	wait_for "controller" 15 grep -q "controller in" "$WORK/kill-controller.txt"
	sandbox kill 120 -- "$TESTBOT" bot --out "$WORK/botout" --wait 100
	wait "$ctl"
	check "the bot is in the channel before the kill" grep -q '^joined ' "$WORK/kill-controller.txt"
	check_ge "the bot's IRC session went through before the kill" 1 \
		"$(pcount "$PCAP" "$GW && tcp.dstport==6667 && frame contains \"JOIN $CHANNEL\"")"
	kill -KILL "$SANDBOX_PID"
	sandbox_wait
	check_eq "sandbox run died of SIGKILL" 137 "$SANDBOX_RC"
	sleep 1 # the kernel closes the dead gateway's sockets (a FIN to ngircd)
	local inmate gateway upif
	inmate=$(sed -n 's/^inmate=//p' "$S/net.txt")
	gateway=$(sed -n 's/^gateway=//p' "$S/net.txt")
	upif=$(sed -n 's/^upstream_if=//p' "$S/net.txt")
	check "the leftover inmate namespace is named in net.txt" ip netns exec "$inmate" true
	check_eq "no process left in the inmate namespace" "" "$(ip netns pids "$inmate" 2>/dev/null)"

	local t0
	t0=$(date +%s.%N)
	check "from the inmate namespace, TCP to the web server fails" \
		not ip netns exec "$inmate" "$TESTBOT" probe $WEB_ADDR 80 --timeout-ms 2000
	check "from the inmate namespace, TCP to the C&C fails" \
		not ip netns exec "$inmate" "$TESTBOT" probe $CC_ADDR 6667 --timeout-ms 2000
	check "from the inmate namespace, DNS (UDP and TCP) fails" \
		not ip netns exec "$inmate" "$TESTBOT" resolve dl.bot.example --dns $DNS_ADDR
	capture_stop
	check_eq "zero packets of ours reached the lab after the kill" 0 \
		"$(pcount "$PCAP" "$GW && frame.time_epoch >= $t0")"

	session_net_remove "$S/net.txt"
	check "the leftover namespaces are removed (net.txt)" \
		not sh -c "ip netns list | grep -qw -e '$inmate' -e '$gateway'"
	# The kernel dismantles a namespace asynchronously: give it a moment.
	check "the upstream link $upif went with them" wait_for "$upif to go" 10 not ip -n "$NET" link show "$upif"
}

not() { ! "$@" >/dev/null 2>&1; }

# b. Malformed protocol data from the inmate, then a normal flow.
scenario_garbage() {
	echo "# failure b: malformed protocol data"
	local S=$WORK/garbage
	capture_start garbage || return 1
	sandbox garbage 90 -- "$TESTBOT" garbage --out "$WORK/botout"
	sandbox_wait
	capture_stop
	check_eq "sandbox run ends normally" 0 "$SANDBOX_RC"
	check "the normal download afterwards worked" grep -q "normal download ok.*sha256=$PAYLOAD_SHA" \
		"$S/stdout.txt"
	local starts ends
	starts=$(evcount "$S" '.type=="flow_start"')
	ends=$(evcount "$S" '.type=="flow_end"')
	check_ge "flows of the garbage got flow_start events" 5 "$starts"
	check_eq "every flow ended (flow_end per flow_start)" "$starts" "$ends"
	check_ge "the 100 KB IRC line was classified irc" 1 \
		"$(evcount "$S" '.type=="flow_start" and .dport==6667 and .proto=="irc"')"
	check_ge "the 100 KB line is flagged overlong in the flow's metadata" 1 \
		"$(evcount "$S" '.type=="flow_end" and .meta.proto=="irc" and .meta.overlong_lines==true')"
	check_ge "the random bytes to port 80 got a verdict" 1 \
		"$(evcount "$S" '.type=="flow_start" and .dport==80 and .proto=="unknown"')"
	check_ge "the bogus DNS over TCP got a verdict" 1 \
		"$(evcount "$S" '.type=="flow_start" and .transport=="tcp" and .dport==53')"
	check "the bogus DNS over UDP got a verdict" test \
		"$(evcount "$S" '.type=="flow_start" and .transport=="udp" and .dport==53 and .proto!="dns"')" -ge 1
	check_ge "the binary after the HTTP head is recorded as a parse error" 1 \
		"$(evcount "$S" '.type=="flow_end" and .meta.proto=="http" and (.meta.error // "" | startswith("http"))')"
	check_ge "download event after the garbage" 1 \
		"$(evcount "$S" ".type==\"download\" and .sha256==\"$PAYLOAD_SHA\"")"
	check "mamori contain report reads the session" sh -c "'$MAMORI' contain report '$S' --json >/dev/null"
	check_ge "the download went through in the lab" 1 "$(pcount "$PCAP" "$GW && http.response.code==200")"
}

# c. A storm of 3,000 connections to the flood target, then a normal flow.
scenario_storm() {
	echo "# failure c: connection storm"
	local S=$WORK/storm
	capture_start storm || return 1
	sandbox storm 120 -- "$TESTBOT" storm --target $FLOOD_ADDR:80 --count 3000 --procs 15 --hold-ms 1500 \
		--then $URL --out "$WORK/botout"
	sandbox_wait
	capture_stop
	check_eq "sandbox run ends normally" 0 "$SANDBOX_RC"
	local line
	line=$(grep -o 'storm .*' "$S/stdout.txt")
	note "$line"
	check "the storm made 3000 attempts" grep -q "attempted=3000 " "$S/stdout.txt"
	check "the normal download after the storm worked" grep -q "normal download ok.*sha256=$PAYLOAD_SHA" \
		"$S/stdout.txt"
	check_ge "a flood detect event names $FLOOD_ADDR" 1 \
		"$(evcount "$S" ".type==\"detect\" and .kind==\"flood\" and ([.targets[] | startswith(\"$FLOOD_ADDR\")] | any)")"
	local flows
	flows=$(evcount "$S" ".type==\"flow_start\" and .dst==\"$FLOOD_ADDR\"")
	note "flows of the storm with a verdict: $flows; $(grep -o 'gateway .*' "$WORK/storm.out")"
	check_lt "the gateway refused part of the storm (fewer flows than 3000)" 3000 "$flows"
	check "sandbox run reports the connections refused over the relay's cap" \
		grep -Eq "refused[^0-9]*[1-9]|[1-9][0-9]* refused" "$WORK/storm.out"
	check_ge "the storm was cut: some connections reset" 1 "$(sed -n 's/.* reset=\([0-9]*\).*/\1/p' "$S/stdout.txt")"
	check_eq "no flow of the storm forwarded" 0 \
		"$(evcount "$S" ".type==\"flow_start\" and .dst==\"$FLOOD_ADDR\" and (.verdict==\"forward\" or .verdict==\"limit\")")"
	check_eq "zero packets of the storm in the lab" 0 "$(pcount "$PCAP" "ip.addr==$FLOOD_ADDR")"
	check_ge "the download afterwards went through in the lab" 1 \
		"$(pcount "$PCAP" "$GW && http.response.code==200")"
}

# ------------------------------------------------------------ main

echo "# lab $NET, work folder $WORK, blackhole metric $METRIC"
if ! lab_up; then
	echo "FAIL - the lab did not come up"
	for f in "$WORK"/lab/*.out; do
		echo "--- $f"
		tail -5 "$f"
	done
	exit 1
fi

scenario_bot
scenario_kill
scenario_garbage
scenario_storm

echo "# $PASS passed, $FAIL failed"
for f in "${FAILED[@]}"; do echo "#   failed: $f"; done
[ "$FAIL" -eq 0 ]
