#!/bin/sh
# Regenerate the seed corpus fuzz/corpus/packet: real IPv4 packets captured
# while ping (plain, record-route option, fragmented), hping3 (SYN flood,
# SYN scan, UDP, raw IP protocol 47, fragmented) and curl talk between two
# namespaces this script creates (and always deletes: trap), each packet
# written without its Ethernet header as one file ("real-*"), plus a few
# hand-made malformed variants ("bad-*"). The namespaces have no link to the
# host's: nothing can leave. Run as root only to change the corpus; the
# result is committed.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/corpus/packet"
tag="mamori-seed$$"
a="$tag-a"
b="$tag-b"
tmp="$(mktemp -d)"
cleanup() {
	[ -f "$tmp/http.pid" ] && kill "$(cat "$tmp/http.pid")" 2>/dev/null || true
	ip netns del "$a" 2>/dev/null || true
	ip netns del "$b" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
mkdir -p "$out"

ip netns add "$a"
ip netns add "$b"
ip -n "$a" link set lo up
ip -n "$b" link set lo up
ip -n "$a" link add eth0 type veth peer name eth0 netns "$b"
ip -n "$a" addr add 10.88.0.2/24 dev eth0
ip -n "$b" addr add 10.88.0.1/24 dev eth0
ip -n "$b" addr add 203.0.113.9/32 dev lo
ip -n "$b" addr add 198.51.100.10/32 dev lo
ip -n "$a" link set eth0 up
ip -n "$b" link set eth0 up
ip -n "$a" route add 203.0.113.0/24 via 10.88.0.1
ip -n "$a" route add 198.51.100.0/24 via 10.88.0.1
mkdir -p "$tmp/www"
printf 'hello from the lab\n' >"$tmp/www/index.html"
ip netns exec "$b" python3 -m http.server --bind 203.0.113.9 --directory "$tmp/www" 80 >/dev/null 2>&1 &
echo $! >"$tmp/http.pid"
sleep 1

ip netns exec "$a" tshark -n -q -i eth0 -F pcap -w "$tmp/a.pcap" >/dev/null 2>&1 &
shark=$!
sleep 2
inmate() { ip netns exec "$a" "$@" >/dev/null 2>&1 || true; }
inmate ping -c 2 -i 0.2 198.51.100.10
inmate ping -c 1 -R 198.51.100.10
inmate ping -c 1 -s 3000 198.51.100.10
inmate hping3 -S -p 80 --faster -c 20 203.0.113.9
inmate timeout 10 hping3 -S --scan 20-30 203.0.113.9
inmate hping3 -2 -p 53 -c 3 -d 40 198.51.100.10
inmate hping3 -0 -H 47 -c 2 -d 16 198.51.100.10
inmate hping3 -S -p 80 -f -c 2 -d 64 203.0.113.9
inmate hping3 -1 -C 13 -c 1 198.51.100.10
inmate curl -s -m 5 http://203.0.113.9/
inmate sh -c 'printf query >/dev/udp/198.51.100.10/53'
sleep 1
kill "$shark"
wait "$shark" 2>/dev/null || true

python3 - "$tmp/a.pcap" "$out" <<'PY'
import hashlib, os, struct, sys
path, out = sys.argv[1], sys.argv[2]
data = open(path, "rb").read()
magic = struct.unpack("<I", data[:4])[0]
assert magic == 0xA1B2C3D4, "expected a little-endian pcap"
assert struct.unpack("<I", data[20:24])[0] == 1, "expected Ethernet frames"
pos, kept, seen = 24, 0, set()
while pos + 16 <= len(data):
    _, _, caplen, _ = struct.unpack("<IIII", data[pos:pos + 16])
    frame = data[pos + 16:pos + 16 + caplen]
    pos += 16 + caplen
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        continue
    ip = frame[14:]
    # One packet per kind: protocol, fragment bits, TCP flags or ICMP type.
    proto, frag = ip[9], ip[6] & 0x3F
    ihl = (ip[0] & 15) * 4
    kind = (proto, frag != 0, ip[6:8] != b"\x00\x00", ihl,
            ip[ihl + 13] if proto == 6 and len(ip) > ihl + 13 else ip[ihl] if len(ip) > ihl else -1)
    if kind in seen and kept >= 8:
        continue
    seen.add(kind)
    name = "real-%s" % hashlib.sha1(ip).hexdigest()[:12]
    open(os.path.join(out, name), "wb").write(ip)
    kept += 1
print("kept %d real packets" % kept)

def syn():
    ip = bytes([0x45, 0, 0, 44, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 88, 0, 2, 203, 0, 113, 9])
    tcp = bytes([0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0x72, 0x10, 0, 0, 0, 0])
    return bytearray(ip + tcp + b"abcd")
bad = {}
p = syn(); bad["bad-short"] = bytes(p[:19])
p = syn(); p[0] = 0x44; bad["bad-ihl-small"] = bytes(p)
p = syn(); p[0] = 0x4F; bad["bad-ihl-past-end"] = bytes(p)
p = syn(); p[2:4] = b"\x05\xdc"; bad["bad-total-too-long"] = bytes(p)
p = syn(); p[2:4] = b"\x00\x1e"; bad["bad-total-cuts-tcp"] = bytes(p)
p = syn(); p[2:4] = b"\x00\x10"; bad["bad-total-under-header"] = bytes(p)
p = syn(); p[6:8] = b"\x20\x03"; bad["bad-later-fragment"] = bytes(p)
p = syn(); p[32] = 0xF0; bad["bad-tcp-offset"] = bytes(p)
p = syn(); p[0] = 0x65; bad["bad-version"] = bytes(p)
for name, b in bad.items():
    open(os.path.join(out, name), "wb").write(b)
print("wrote %d malformed seeds" % len(bad))
PY
