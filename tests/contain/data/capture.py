#!/usr/bin/env python3
"""Regenerate the captured protocol samples in this folder (run by hand; the
results are committed). Every peer is a real tool (swaks, curl, openssl,
ngircd, dnsmasq) talking to a real or scripted server on 127.0.0.1 only,
through a recording relay. Nothing listens or connects beyond loopback.

File format (also the fuzz_proto input format, see fuzz/fuzz_proto.c):
  one byte 'T' (TCP) or 'U' (UDP), then records of
  one byte 'C' (client to server) or 'S' (server to client),
  a 4-byte big-endian length, and that many bytes (one read or datagram).
"""
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def write_flow(name, transport, records):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(transport)
        for d, data in records:
            f.write(d + struct.pack(">I", len(data)) + data)
    print(f"{name}: {len(records)} records, {sum(len(r[1]) for r in records)} bytes")


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class TcpRelay(threading.Thread):
    """Accepts one connection on 127.0.0.1 and relays it to an upstream on
    127.0.0.1, recording every read in order."""

    def __init__(self, upstream_port):
        super().__init__(daemon=True)
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(1)
        self.port = self.ls.getsockname()[1]
        self.upstream_port = upstream_port
        self.records = []
        self.start()

    def run(self):
        c, _ = self.ls.accept()
        u = socket.create_connection(("127.0.0.1", self.upstream_port))
        peers = {c: (u, b"C"), u: (c, b"S")}
        open_ = {c, u}
        while open_:
            r, _, _ = select.select(list(open_), [], [], 5)
            if not r:
                break
            for s in r:
                data = s.recv(65536)
                other, d = peers[s]
                if not data:
                    open_.discard(s)
                    try:
                        other.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    continue
                self.records.append((d, data))
                other.sendall(data)
        c.close()
        u.close()


def scripted_server(port, replies_for, banner):
    """A tiny line server (for SMTP): sends `banner`, then answers each
    client line with replies_for(line, state)."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(1)

    def serve():
        c, _ = ls.accept()
        c.sendall(banner)
        buf = b""
        state = {"data": False}
        while True:
            data = c.recv(65536)
            if not data:
                break
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                reply = replies_for(line.rstrip(b"\r"), state)
                if reply:
                    c.sendall(reply)
                if reply == b"221 bye\r\n":
                    c.close()
                    ls.close()
                    return
        c.close()
        ls.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


def smtp_replies(line, st):
    if st["data"]:
        if line == b".":
            st["data"] = False
            return b"250 2.0.0 queued as 4711\r\n"
        return None
    cmd = line[:4].upper()
    if cmd == b"EHLO":
        return b"250-sink.example.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n"
    if cmd == b"DATA":
        st["data"] = True
        return b"354 End data with <CR><LF>.<CR><LF>\r\n"
    if cmd == b"QUIT":
        return b"221 bye\r\n"
    return b"250 2.1.0 Ok\r\n"


def capture_smtp():
    up = free_port()
    t = scripted_server(up, smtp_replies, b"220 sink.example.test ESMTP Postfix (Debian)\r\n")
    relay = TcpRelay(up)
    subprocess.run(["swaks", "--server", f"127.0.0.1:{relay.port}", "--helo", "bot.example.test",
                    "--from", "bot@198.51.100.5",
                    "--to", "alice@203.0.113.10,bob@203.0.113.11,carol@203.0.113.12",
                    "--header", "Subject: Cheap watches, best prices",
                    "--body", "Buy now.\n.leading dot line\nBye.",
                    "--silent", "2"], check=True, timeout=30)
    t.join(5)
    relay.join(5)
    write_flow("smtp_swaks.flow", b"T", relay.records)


def capture_http(tmp):
    root = os.path.join(tmp, "www")
    os.makedirs(root)
    with open(os.path.join(root, "payload.bin"), "wb") as f:
        f.write(bytes(range(256)) * 16)
    with open(os.path.join(root, "index.html"), "wb") as f:
        f.write(b"<html>tasks: none</html>\n")
    up = free_port()
    srv = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                            "--directory", root, "--protocol", "HTTP/1.1", str(up)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(up)
        relay = TcpRelay(up)
        # Two requests on one keep-alive connection; curl's own Host header.
        subprocess.run(["curl", "-s", "-o", "/dev/null", "-o", "/dev/null", "-A", "Mozilla/4.0 (bot 1.0)",
                        "--connect-to", f"dl.example.test:80:127.0.0.1:{relay.port}",
                        "http://dl.example.test/index.html", "http://dl.example.test/payload.bin"],
                       check=True, timeout=30)
        relay.join(10)
        write_flow("http_curl.flow", b"T", relay.records)
    finally:
        srv.terminate()
        srv.wait()


def capture_tls(tmp):
    key, crt = os.path.join(tmp, "k.pem"), os.path.join(tmp, "c.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "1", "-subj", "/CN=c2.example.test"], check=True, capture_output=True)
    up = free_port()
    srv = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{up}", "-key", key, "-cert", crt,
                            "-quiet"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(up)
        relay = TcpRelay(up)
        subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{relay.port}",
                        "-servername", "c2.example.test", "-alpn", "http/1.1"],
                       input=b"GET / HTTP/1.0\r\n\r\n", capture_output=True, timeout=30)
        relay.join(10)
        write_flow("tls_openssl.flow", b"T", relay.records)
    finally:
        srv.kill()
        srv.wait()


def capture_irc(tmp):
    up = free_port()
    conf = os.path.join(tmp, "ngircd.conf")
    motd = os.path.join(tmp, "motd")
    with open(motd, "w") as f:
        f.write("lab server\n")
    with open(conf, "w") as f:
        f.write(f"""[Global]
Name = irc.example.test
Info = lab C&C
Listen = 127.0.0.1
Ports = {up}
MotdFile = {motd}
PidFile = {tmp}/ngircd.pid
ServerUID = root
ServerGID = root
[Limits]
PingTimeout = 120
[Options]
PAM = no
Ident = no
DNS = no
[Channel]
Name = #c2
Topic = !dl http://dl.example.test/payload.bin
""")
    srv = subprocess.Popen(["ngircd", "-n", "-f", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(up)
        relay = TcpRelay(up)
        bot = socket.create_connection(("127.0.0.1", relay.port))
        herder = socket.create_connection(("127.0.0.1", up))

        def until(sock, marker, timeout=5):
            buf, end = b"", time.time() + timeout
            while marker not in buf and time.time() < end:
                r, _, _ = select.select([sock], [], [], 0.2)
                if r:
                    buf += sock.recv(65536)
            return buf

        bot.sendall(b"NICK bot0042\r\nUSER bot 0 * :lab bot\r\n")
        until(bot, b" 376 ")
        herder.sendall(b"NICK herder\r\nUSER herder 0 * :herder\r\nJOIN #c2\r\n")
        until(herder, b" 366 ")
        bot.sendall(b"JOIN #c2\r\n")
        until(bot, b" 366 ")
        herder.sendall(b"PRIVMSG #c2 :!dl http://dl.example.test/payload.bin\r\n")
        until(bot, b"!dl")
        bot.sendall(b"PRIVMSG #c2 :done 4096 bytes\r\nPING :irc.example.test\r\n")
        until(bot, b"PONG")
        bot.sendall(b"QUIT :bye\r\n")
        until(bot, b"ERROR")
        bot.close()
        herder.close()
        relay.join(10)
        write_flow("irc_ngircd.flow", b"T", relay.records)
    finally:
        srv.terminate()
        srv.wait()


def dns_query(qid, name, qtype=1):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack(">HH", qtype, 1)


def capture_dns(tmp):
    up = free_port(socket.SOCK_DGRAM)
    srv = subprocess.Popen(["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--user=root",
                            "--listen-address=127.0.0.1", "--bind-interfaces", f"--port={up}",
                            "--no-resolv", "--no-hosts", "--address=/c2.example.test/198.51.100.7",
                            "--address=/dl.example.test/198.51.100.8", "--cname=www.example.test,c2.example.test",
                            f"--pid-file={tmp}/dnsmasq.pid"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(up)  # dnsmasq also listens on TCP
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        records = []
        for qid, name in ((0x1234, "c2.example.test"), (0x1235, "www.example.test")):
            q = dns_query(qid, name)
            s.sendto(q, ("127.0.0.1", up))
            records.append((b"C", q))
            records.append((b"S", s.recv(4096)))
        write_flow("dns_dnsmasq_udp.flow", b"U", records)
        relay = TcpRelay(up)
        t = socket.create_connection(("127.0.0.1", relay.port))
        q = dns_query(0x2222, "dl.example.test")
        t.sendall(struct.pack(">H", len(q)) + q)
        t.settimeout(5)
        t.recv(4096)
        t.close()
        relay.join(10)
        write_flow("dns_dnsmasq_tcp.flow", b"T", relay.records)
    finally:
        srv.terminate()
        srv.wait()


def write_handmade():
    """Transcripts written by hand where no server is installed (FTP,
    modelled on vsftpd 3.0.3) or where the point is a confusable case."""
    write_flow("ftp_vsftpd.flow", b"T", [
        (b"S", b"220 (vsFTPd 3.0.3)\r\n"),
        (b"C", b"USER anonymous\r\n"),
        (b"S", b"331 Please specify the password.\r\n"),
        (b"C", b"PASS hunter2-secret\r\n"),
        (b"S", b"230 Login successful.\r\n"),
        (b"C", b"SYST\r\n"),
        (b"S", b"215 UNIX Type: L8\r\n"),
        (b"C", b"CWD /pub\r\nTYPE I\r\n"),
        (b"S", b"250 Directory successfully changed.\r\n200 Switching to Binary mode.\r\n"),
        (b"C", b"PASV\r\n"),
        (b"S", b"227 Entering Passive Mode (198,51,100,9,195,80).\r\n"),
        (b"C", b"RETR bot-update.exe\r\n"),
        (b"S", b"150 Opening BINARY mode data connection for bot-update.exe (4096 bytes).\r\n"
               b"226 Transfer complete.\r\n"),
        (b"C", b"PASV\r\n"),
        (b"S", b"227 Entering Passive Mode (198,51,100,9,195,81).\r\n"),
        (b"C", b"STOR stolen.txt\r\n"),
        (b"S", b"150 Ok to send data.\r\n226 Transfer complete.\r\n"),
        (b"C", b"QUIT\r\n"),
        (b"S", b"221 Goodbye.\r\n"),
    ])
    # A banner that names neither protocol: the client's first line decides.
    write_flow("ftp_plain_banner.flow", b"T", [
        (b"S", b"220 Welcome\r\n"),
        (b"C", b"USER ftp\r\n"),
        (b"S", b"331 Password required\r\n"),
        (b"C", b"PASS x\r\n"),
    ])
    write_flow("smtp_plain_banner.flow", b"T", [
        (b"S", b"220 Welcome\r\n"),
        (b"C", b"HELO x\r\n"),
        (b"S", b"250 ok\r\n"),
    ])


def flow_bytes(transport, records):
    return transport + b"".join(d + struct.pack(">I", len(x)) + x for d, x in records)


def write_seeds():
    """Seeds of fuzz/corpus/proto: every sample here, plus small malformed
    and confusable flows (same format)."""
    corpus = os.path.join(HERE, "..", "..", "..", "fuzz", "corpus", "proto")
    os.makedirs(corpus, exist_ok=True)
    for name in sorted(os.listdir(HERE)):
        if name.endswith(".flow"):
            shutil.copy(os.path.join(HERE, name), os.path.join(corpus, name))
    hello = bytes.fromhex("16030100") + b"\x2f\x01\x00\x00\x2b\x03\x03" + bytes(32) + bytes.fromhex("00000213010100ffff")
    dns_loop = bytes.fromhex("123481800001000100000000") + b"\x01a\x00\x00\x01\x00\x01" + bytes.fromhex("c013000100010000003c0004c6336401")
    seeds = {
        "tls_bad_extensions": (b"T", [(b"C", hello)]),
        "tls_alert_first": (b"T", [(b"C", hello), (b"S", bytes.fromhex("15030300020228"))]),
        "dns_pointer_loop": (b"U", [(b"S", dns_loop)]),
        "dns_tcp_split_length": (b"T", [(b"C", b"\x00"), (b"C", b"\x11" + bytes(17))]),
        "http_chunked_pipelined": (b"T", [
            (b"C", b"GET / HTTP/1.1\r\nHost: a\r\n\r\nHEAD /x HTTP/1.1\r\n\r\n"),
            (b"S", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"
                   b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n")]),
        "http_bad_length": (b"T", [(b"C", b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n")]),
        "http_connect": (b"T", [(b"C", b"CONNECT 203.0.113.1:25 HTTP/1.1\r\n\r\n"),
                                (b"S", b"HTTP/1.1 200 Connection established\r\n\r\n220 mx ESMTP\r\n")]),
        "irc_overlong": (b"T", [(b"C", b"NICK a\r\nPRIVMSG #x :" + b"A" * 5000 + b"\r\nJOIN #y,#z\r\n")]),
        "irc_server_first": (b"T", [(b"S", b":irc.example.test NOTICE * :*** Looking up your hostname\r\n"),
                                    (b"C", b"NICK b\r\nUSER b 0 * :b\r\n"),
                                    (b"S", b"@time=x :irc 332 b #c :!ddos 203.0.113.9\r\nPING :irc\r\n")]),
        "smtp_starttls": (b"T", [(b"S", b"220 mx ESMTP\r\n"), (b"C", b"EHLO a\r\nSTARTTLS\r\n"),
                                 (b"S", b"250 ok\r\n220 go ahead\r\n"), (b"C", hello)]),
        "smtp_many_rcpt": (b"T", [(b"C", b"HELO a\r\nMAIL FROM:<a@b>\r\n" +
                                   b"".join(b"RCPT TO:<u%d@c>\r\n" % i for i in range(300)) +
                                   b"DATA\r\nSubject: \xff\xfe bad utf8\r\n\r\n.\r\n")]),
        "ftp_bad_pasv": (b"T", [(b"S", b"220 FTP\r\n"), (b"C", b"USER a\r\nPASV\r\n"),
                                (b"S", b"227 Entering Passive Mode (999,1,2,3,4,5)\r\n227 (1,2,3)\r\n")]),
        "banner_ambiguous": (b"T", [(b"S", b"220 Welcome\r\n")]),
        "unknown_binary": (b"T", [(b"C", bytes(range(256)))]),
        "udp_junk": (b"U", [(b"C", b"\x00" * 40), (b"S", b"\xff" * 3)]),
    }
    for name, (t, recs) in seeds.items():
        with open(os.path.join(corpus, name), "wb") as f:
            f.write(flow_bytes(t, recs))
    print(f"{len(os.listdir(corpus))} seeds in fuzz/corpus/proto")


def main():
    write_handmade()
    if sys.argv[1:] == ["--handmade"]:
        write_seeds()
        return
    tmp = tempfile.mkdtemp()
    try:
        capture_smtp()
        capture_http(tmp)
        capture_tls(tmp)
        capture_irc(tmp)
        capture_dns(tmp)
    finally:
        shutil.rmtree(tmp)
    write_seeds()


if __name__ == "__main__":
    main()
