"""The Python `websockets` client (a foreign peer) against `switchboard serve`'s /echo and /chat."""

import asyncio
import json

import pytest
import websockets
from websockets.frames import CloseCode



def run(coro):
    return asyncio.run(coro)


def test_text_and_binary_echo(server):
    async def main():
        async with websockets.connect(f"{server}/echo", compression=None) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send("κόσμε 🎉")
            assert await ws.recv() == "κόσμε 🎉"
            await ws.send(b"\x00\x01\xfe\xff")
            assert await ws.recv() == b"\x00\x01\xfe\xff"
            await ws.send("")
            assert await ws.recv() == ""

    run(main())


@pytest.mark.parametrize("compression", ["deflate", None])
def test_16_mib_messages(server, compression):
    async def main():
        async with websockets.connect(f"{server}/echo", max_size=None, compression=compression) as ws:
            text = "x" * (16 * 1024 * 1024)
            await ws.send(text)
            assert await ws.recv() == text
            data = bytes(range(256)) * (16 * 1024 * 1024 // 256)
            await ws.send(data)
            assert await ws.recv() == data

    run(main())


def test_over_the_limit_is_closed_with_1009(server):
    async def main():
        ws = await websockets.connect(f"{server}/echo", max_size=None, compression=None)
        await ws.send(b"x" * (16 * 1024 * 1024 + 1))
        with pytest.raises(websockets.ConnectionClosedError):
            await ws.recv()
        await ws.wait_closed()
        assert ws.close_code == CloseCode.MESSAGE_TOO_BIG
        assert "exceeds the limit" in ws.close_reason

    run(main())


def test_fragmented_messages(server):
    async def main():
        async with websockets.connect(f"{server}/echo") as ws:
            await ws.send(["frag", "mented ", "text"])
            assert await ws.recv() == "fragmented text"
            await ws.send([b"\x01", b"\x02\x03", b""])
            assert await ws.recv() == b"\x01\x02\x03"

    run(main())


def test_compression_is_negotiated_and_works(server):
    async def main():
        async with websockets.connect(f"{server}/echo") as ws:
            assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
            for i in range(50):
                message = json.dumps({"seq": i, "text": "compress me " * 20})
                await ws.send(message)
                assert await ws.recv() == message
        async with websockets.connect(f"{server}/echo", compression=None) as ws:
            assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
            await ws.send("plain")
            assert await ws.recv() == "plain"

    run(main())


def test_ping_is_answered(server):
    async def main():
        async with websockets.connect(f"{server}/echo") as ws:
            waiter = await ws.ping(b"are you there")
            latency = await asyncio.wait_for(waiter, 5)
            assert latency >= 0

    run(main())


@pytest.mark.parametrize("code,reason", [(1000, ""), (1001, "going"), (4000, "app code"), (4999, "é" * 40)])
def test_close_codes_are_echoed(server, code, reason):
    async def main():
        ws = await websockets.connect(f"{server}/echo")
        await ws.close(code, reason)
        assert ws.protocol.close_rcvd is not None
        assert ws.protocol.close_rcvd.code == code
        assert ws.protocol.close_sent.code == code

    run(main())


def test_chat_broadcasts_to_others_and_announces_joins_and_leaves(server):
    async def main():
        async with websockets.connect(f"{server}/chat") as alice:
            welcome = json.loads(await alice.recv())
            assert welcome["type"] == "welcome"
            async with websockets.connect(f"{server}/chat") as bob:
                bob_welcome = json.loads(await bob.recv())
                assert bob_welcome["type"] == "welcome" and bob_welcome["peers"] == 2
                join = json.loads(await alice.recv())
                assert join == {"type": "join", "id": bob_welcome["id"], "room": "lobby", "peers": 2}
                await alice.send("hi bob")
                assert await bob.recv() == "hi bob"
                await bob.send(b"\x01binary")
                assert await alice.recv() == b"\x01binary"
                # The sender does not get its own message back.
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(alice.recv(), 0.3)
            leave = json.loads(await alice.recv())
            assert leave == {"type": "leave", "id": bob_welcome["id"], "room": "lobby", "peers": 1}

    run(main())


def test_chat_rooms_are_separate(server):
    async def main():
        async with websockets.connect(f"{server}/chat?room=red") as red, websockets.connect(
            f"{server}/chat?room=blue"
        ) as blue, websockets.connect(f"{server}/chat?room=red") as red2:
            assert json.loads(await red.recv())["room"] == "red"
            assert json.loads(await blue.recv())["room"] == "blue"
            assert json.loads(await red2.recv())["peers"] == 2
            assert json.loads(await red.recv())["type"] == "join"
            await red2.send("only for red")
            assert await red.recv() == "only for red"
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(blue.recv(), 0.3)

    run(main())


def test_plain_http_on_a_websocket_path_is_426(server):
    async def main():
        http = server.replace("ws://", "http://")
        host, port = http[len("http://"):].split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        status = await reader.readline()
        assert status.startswith(b"HTTP/1.1 426"), status
        writer.close()

    run(main())
