#!/usr/bin/env python3
"""The bot herder of tests/contain/e2e.sh: connects to the lab's ngircd,
joins the command channel, waits for a bot to join, and gives it commands
one at a time, each time waiting for the bot's "done ..." reply in the
channel. It prints one line per event ("joined NICK", "reply NICK TEXT",
"quit NICK") so that the test script can read what happened.

Usage: controller.py SERVER PORT CHANNEL TIMEOUT_S [COMMAND]...
With no COMMAND it stops as soon as the bot has joined (the failure case
that kills the gateway then). Every wait is bounded by TIMEOUT_S overall;
exit 0 when every command got its reply (and, after "!quit", the bot
left), 1 otherwise. Lines from the server are capped at 4 KiB."""
import socket
import sys
import time

MAX_LINE = 4096


class Irc:
    def __init__(self, server, port, deadline):
        self.deadline = deadline
        self.sock = socket.create_connection((server, port), timeout=5)
        self.buf = b""

    def send(self, line):
        self.sock.sendall(line.encode() + b"\r\n")

    def lines(self):
        """Yield lines until the deadline; PINGs are answered here."""
        while time.time() < self.deadline:
            while b"\n" in self.buf:
                raw, self.buf = self.buf.split(b"\n", 1)
                line = raw.rstrip(b"\r").decode("utf-8", "replace")
                if line.startswith("PING "):
                    self.send("PONG " + line[5:])
                    continue
                yield line
            if len(self.buf) > MAX_LINE:
                self.buf = b""
            self.sock.settimeout(max(0.1, min(1.0, self.deadline - time.time())))
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            if not data:
                return
            self.buf += data


def parse(line):
    """(nick, command, params, trailing) of one IRC line."""
    nick = ""
    if line.startswith(":"):
        prefix, _, line = line[1:].partition(" ")
        nick = prefix.split("!", 1)[0]
    head, _, trailing = line.partition(" :")
    parts = head.split()
    return nick, (parts[0] if parts else ""), parts[1:], trailing


def main():
    server, port, channel, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    commands = sys.argv[5:]
    irc = Irc(server, port, time.time() + timeout)
    irc.send("NICK herder")
    irc.send("USER herder 0 * :lab controller")
    me_in = False
    bot = None
    pending = list(commands)
    waiting = None
    for line in irc.lines():
        nick, cmd, params, text = parse(line)
        if cmd == "001":
            irc.send("JOIN " + channel)
        elif cmd == "JOIN" and nick == "herder":
            me_in = True
            print("controller in %s" % channel, flush=True)
        elif (cmd == "JOIN" and nick != "herder" and me_in and bot is None) or (
            cmd == "353" and bot is None and [n for n in text.split() if n.lstrip("@+") != "herder"]
        ):
            # A JOIN after ours, or a bot that was there before us (NAMES).
            bot = nick if cmd == "JOIN" else [n for n in text.split() if n.lstrip("@+") != "herder"][0].lstrip("@+")
            print("joined %s" % nick, flush=True)
            if not pending:
                return 0
        elif cmd == "PRIVMSG" and nick == bot and text.startswith("done "):
            print("reply %s %s" % (nick, text[5:]), flush=True)
            waiting = None
        elif cmd in ("QUIT", "PART") and nick == bot:
            print("quit %s" % nick, flush=True)
            return 0 if not pending and waiting is None else 1
        if bot and waiting is None and pending:
            waiting = pending.pop(0)
            print("order %s" % waiting, flush=True)
            irc.send("PRIVMSG %s :%s" % (channel, waiting))
            if waiting == "!quit":
                waiting = None
    print("timeout (bot %s, waiting for %s, left %s)" % (bot, waiting, pending), flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
