#!/usr/bin/env python3
"""Hostile-load reproductions against a `switchboard serve` binary: memory and CPU figures.

Usage: bench/hostile.py BINARY [scenario ...]   (scenarios: empty, replay, rooms, partial; default all)

Each scenario starts its own server (`serve --port 0`), drives it with raw sockets (only this
machine's loopback), prints what it measured, and stops the server. Figures are RSS from
/proc/PID/status and CPU time from /proc/PID/stat. Not a test: run it by hand, for the numbers.
"""

import base64
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

MIB = 1 << 20


def frame(opcode, payload, fin=True, mask=b"\x01\x02\x03\x04"):
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if n < 4096 else fast_mask(payload, mask)
    return head + mask + masked


def fast_mask(payload, mask):
    key = int.from_bytes(mask * (len(payload) // 4 + 1), "little")
    data = int.from_bytes(payload, "little")
    return (data ^ (key & ((1 << (8 * len(payload))) - 1))).to_bytes(len(payload), "little")


class Server:
    def __init__(self, binary, *args):
        self.proc = subprocess.Popen(
            [binary, "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        line = self.proc.stdout.readline().decode()
        self.addr = next(w for w in line.split() if w.startswith("http://"))[7:]
        host, port = self.addr.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.stderr_lines = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stderr:
            self.stderr_lines.append(line.decode(errors="replace"))

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def connect(self, path, deflate=False):
        sock = socket.create_connection((self.host, self.port))
        key = base64.b64encode(os.urandom(16)).decode()
        offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else ""
        sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {self.addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            head += chunk
        assert b" 101 " in head.split(b"\r\n")[0], head
        return Conn(sock)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.at = 0

    def send(self, opcode, payload, fin=True):
        self.sock.sendall(frame(opcode, payload, fin))

    def _need(self, n):
        while len(self.buf) - self.at < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            if self.at:
                del self.buf[: self.at]
                self.at = 0
            self.buf += chunk

    def recv(self):
        """(opcode, payload) of the next frame; raises EOFError at EOF."""
        self._need(2)
        b, at = self.buf, self.at
        opcode, n, compressed = b[at] & 0x0F, b[at + 1] & 0x7F, b[at] & 0x40
        head = 2
        if n == 126:
            self._need(4)
            b, at = self.buf, self.at
            n, head = struct.unpack(">H", b[at + 2 : at + 4])[0], 4
        elif n == 127:
            self._need(10)
            b, at = self.buf, self.at
            n, head = struct.unpack(">Q", b[at + 2 : at + 10])[0], 10
        self._need(head + n)
        at = self.at
        payload = bytes(self.buf[at + head : at + head + n])
        self.at = at + head + n
        if compressed:
            # The server sends without context takeover: every message inflates on its own.
            payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
        return opcode, payload

    def close_code(self, timeout=10):
        """Reads until a close frame: its code, 1006 at EOF, "open" if nothing closes it in time."""
        self.sock.settimeout(timeout)
        deadline = time.time() + timeout
        try:
            while time.time() < deadline:
                opcode, payload = self.recv()
                if opcode == 8:
                    return struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
            return "open"
        except socket.timeout:
            return "open"
        except (EOFError, ConnectionError, OSError):
            return 1006

    def welcome(self):
        while True:
            opcode, payload = self.recv()
            if opcode == 1 and payload.startswith(b"{") and b'"welcome"' in payload:
                return json.loads(payload)


def empty(binary):
    """One publisher of empty /chat messages, one subscriber that never reads, for 10 s."""
    server = Server(binary)
    sub = server.connect("/chat?room=flood")
    sub.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    pub = server.connect("/chat?room=flood")
    peak, stop = 0.0, time.time() + 10
    batch = frame(1, b"") * 1000
    while time.time() < stop:
        try:
            pub.sock.sendall(batch)
        except OSError:
            break
        peak = max(peak, server.rss_mib())
    code = sub.close_code()
    sub.sock.close()
    pub.sock.close()
    time.sleep(2)
    print(f"empty: peak RSS {peak:.0f} MiB, subscriber closed with {code}, RSS after both left "
          f"{server.rss_mib():.0f} MiB; 'slow consumer' log lines: "
          f"{sum('slow consumer' in l for l in server.stderr_lines)}")
    server.stop()


def replay(binary, extra):
    """A room with 100 x 1 MiB of history; four clients catch up with since=EPOCH:0 at once (offering
    permessage-deflate, as browsers do) while an unrelated /echo client measures its round trips."""
    server = Server(binary, *extra)
    writer = server.connect("/chat?room=big")
    position = writer.welcome()["position"]
    epoch = position.split(":")[0]
    for i in range(100):
        # Text that compresses about 4:1, like JSON, so that deflate has real work to do.
        writer.send(1, (f"{i:05}" + base64.b64encode(os.urandom(3 * MIB // 16)).decode() * 4)[:MIB].encode())
    time.sleep(3)
    echo = server.connect("/echo")
    worst = [0.0]
    done = threading.Event()

    def ping():
        while not done.is_set():
            start = time.time()
            echo.send(1, b"ping")
            echo.recv()
            worst[0] = max(worst[0], time.time() - start)
            time.sleep(0.01)

    threading.Thread(target=ping, daemon=True).start()
    results = []

    def catch_up():
        conn = server.connect(f"/chat?room=big&since={epoch}:0", deflate=True)
        got = 0
        try:
            while True:
                opcode, payload = conn.recv()
                if opcode == 8:
                    code = struct.unpack(">H", payload[:2])[0]
                    results.append(f"closed {code} after {got}")
                    return
                if payload.startswith(b"{") and b'"welcome"' in payload:
                    results.append(f"{got} replayed, recovered={json.loads(payload)['recovered']}")
                    return
                got += 1
        except EOFError:
            results.append(f"dropped after {got}")

    cpu = server.cpu_seconds()
    started = time.time()
    threads = [threading.Thread(target=catch_up) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    elapsed = time.time() - started
    done.set()
    print(f"replay: {results}; server CPU {server.cpu_seconds() - cpu:.2f} s over {elapsed:.1f} s; "
          f"worst /echo round trip meanwhile {worst[0] * 1000:.0f} ms; peak RSS {server.rss_mib():.0f} MiB")
    server.stop()


def rooms(binary, extra):
    """20 000 rooms visited once; and, on another server, one client alone in a room that sends
    100 x 1 MiB and leaves. RSS right after, and after the history's TTL (5 s) has passed."""
    server = Server(binary, "--history-ttl", "5", *extra)
    base = server.rss_mib()
    for i in range(20000):
        conn = server.connect(f"/chat?room=r{i}")
        conn.welcome()
        conn.sock.close()
    time.sleep(1)
    visited = server.rss_mib()
    time.sleep(7)
    later = server.rss_mib()
    time.sleep(8)
    print(f"rooms: 20 000 rooms visited once: RSS {base:.0f} -> {visited:.0f} MiB, {later:.0f} MiB 7 s later, "
          f"{server.rss_mib():.0f} MiB 15 s later (TTL 5 s)")
    server.stop()
    server = Server(binary, "--history-ttl", "5", *extra)
    alone = server.connect("/chat?room=alone")
    alone.welcome()
    for i in range(100):
        alone.send(1, b"y" * MIB)
    alone.send(8, struct.pack(">H", 1000))
    alone.close_code()
    time.sleep(1)
    sent = server.rss_mib()
    time.sleep(7)
    print(f"rooms: one client sent 100 x 1 MiB alone and left: RSS {sent:.0f} MiB, {server.rss_mib():.0f} MiB "
          f"7 s later (TTL 5 s)")
    server.stop()


def partial(binary):
    """20 connections each holding a 16 MiB message minus one byte."""
    server = Server(binary)
    size = 16 * MIB
    head = bytes([0x82, 0x80 | 127]) + struct.pack(">Q", size) + b"\x00\x00\x00\x00"
    conns, body = [], b"z" * (size - 1)
    for _ in range(20):
        conn = server.connect("/echo")
        try:
            conn.sock.sendall(head + body)
        except OSError:
            pass
        conns.append(conn)
    time.sleep(2)
    peak = server.rss_mib()
    codes = {}
    for conn in conns:
        conn.sock.settimeout(1)
        try:
            opcode, payload = conn.recv()
            code = struct.unpack(">H", payload[:2])[0] if opcode == 8 else opcode
        except (socket.timeout, EOFError, OSError):
            code = "open"
        codes[code] = codes.get(code, 0) + 1
    print(f"partial: RSS {peak:.0f} MiB with 20 x (16 MiB - 1) sent; outcome per connection: {codes}")
    for conn in conns:
        conn.sock.close()
    server.stop()


def main():
    binary, wanted = sys.argv[1], sys.argv[2:] or ["empty", "replay", "rooms", "partial"]
    help_text = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True).stdout
    # A build with a history budget gets one large enough for the 100 MiB room.
    extra = ["--history", "200"] + (["--history-max-mib", "256"] if "--history-max-mib" in help_text else [])
    for name in wanted:
        {"empty": lambda: empty(binary), "replay": lambda: replay(binary, extra),
         "rooms": lambda: rooms(binary, extra), "partial": lambda: partial(binary)}[name]()


if __name__ == "__main__":
    main()
