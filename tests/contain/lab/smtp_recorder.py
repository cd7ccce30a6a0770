#!/usr/bin/env python3
"""The lab's SMTP server for tests/contain/e2e.sh: it records whatever
reaches it, and nothing ever should (the gateway reflects SMTP to its own
sink). It greets like a mail server, so that a leaked session would also
carry its commands here, and appends every connection and every byte
received to the record file (at most 1 MiB per connection, 5 s of silence
ends one). Usage: smtp_recorder.py ADDR PORT RECORD_FILE"""
import socket
import sys
import threading

LIMIT = 1 << 20


def serve(conn, peer, record, lock):
    conn.settimeout(5)
    with lock, open(record, "ab") as f:
        f.write(b"connection from %s:%d\n" % (peer[0].encode(), peer[1]))
    try:
        conn.sendall(b"220 lab-smtp.bot.example ESMTP recorder\r\n")
        got = 0
        while got < LIMIT:
            data = conn.recv(4096)
            if not data:
                break
            got += len(data)
            with lock, open(record, "ab") as f:
                f.write(data)
            if data.strip().upper().startswith(b"QUIT"):
                break
            conn.sendall(b"250 ok\r\n")
    except OSError:
        pass
    finally:
        conn.close()


def main():
    addr, port, record = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    open(record, "wb").close()
    lock = threading.Lock()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(16)
    print("smtp recorder listening on %s:%d" % (addr, port), flush=True)
    while True:
        conn, peer = srv.accept()
        threading.Thread(target=serve, args=(conn, peer, record, lock), daemon=True).start()


if __name__ == "__main__":
    main()
