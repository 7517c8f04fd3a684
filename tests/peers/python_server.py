"""A WebSocket server written with Python's `websockets`, for testing our client against a foreign peer.

Listens on the port given as the first argument (default: a free one) and prints `READY <port>` once
listening. Paths:
  /echo       echoes every message
  /protocol   sends the negotiated subprotocol (or "none"), then echoes
  /headers    sends the X-Token request header, then echoes
  /extensions sends the Sec-WebSocket-Extensions response header (or "none")
  /close      closes with 4321 "custom reason" after the first message
  /big        sends 16 MiB of binary and 16 MiB of text, then echoes
  /die        sends the first fragment of a message, then drops the TCP connection
  /record     keeps every message it receives (from any connection), answers nothing
  /recorded   sends the recorded messages as a JSON array
The server pings every 0.2 s and drops a client that does not answer within 1 s.
"""

import asyncio
import json
import sys

from websockets.asyncio.server import serve


def select_subprotocol(connection, offered):
    for protocol in ("chat.v2", "chat.v1"):
        if protocol in offered:
            return protocol
    return None


RECORDED = []


async def handler(ws):
    path = ws.request.path
    if path == "/record":
        async for message in ws:
            RECORDED.append(message)
        return
    if path == "/recorded":
        await ws.send(json.dumps(RECORDED))
    elif path == "/protocol":
        await ws.send(ws.subprotocol or "none")
    elif path == "/headers":
        await ws.send(ws.request.headers.get("X-Token", "none"))
    elif path == "/extensions":
        await ws.send(ws.response.headers.get("Sec-WebSocket-Extensions", "none"))
    elif path == "/close":
        await ws.recv()
        await ws.close(4321, "custom reason")
        return
    elif path == "/big":
        await ws.send(bytes(range(256)) * (16 * 1024 * 1024 // 256))
        await ws.send("t" * (16 * 1024 * 1024))
    elif path == "/die":
        async def fragments():
            yield "first fragment "
            await asyncio.sleep(0.05)
            ws.transport.abort()
            await asyncio.sleep(10)
            yield "never sent"

        try:
            await ws.send(fragments())
        except Exception:
            pass
        return
    async for message in ws:
        await ws.send(message)


async def main():
    async with serve(
        handler,
        "127.0.0.1",
        int(sys.argv[1]) if len(sys.argv) > 1 else 0,
        select_subprotocol=select_subprotocol,
        max_size=None,
        ping_interval=0.2,
        ping_timeout=1,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"READY {port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
