"""Script endpoints (Dirigible's *.websocket descriptors) with Python's `websockets` as the browser."""

import asyncio
import json

import pytest
import websockets
from websockets.exceptions import InvalidStatus


def run(coro):
    return asyncio.run(coro)


def test_the_seed_browser_example(project_server):
    # let ws = new WebSocket("ws://localhost:8080/websockets/v4/service/my-endpoint"); ws.send('hello');
    async def main():
        async with websockets.connect(f"{project_server}/websockets/v4/service/my-endpoint") as ws:
            await ws.send("hello")
            assert await ws.recv() == "echo: hello"

    run(main())


@pytest.mark.parametrize("compression", ["deflate", None])
def test_replies_binary_json_and_topics(project_server, compression):
    async def main():
        url = f"{project_server}/websockets/v4/service/peer"
        async with websockets.connect(url, compression=compression) as a, websockets.connect(url) as b:
            await a.send(b"\x01\x02\xff")
            assert await a.recv() == b"\x02\x03\x00"
            await a.send("json")
            assert json.loads(await a.recv()) == {"ok": True, "list": [1, 2]}
            await a.send("sub py")
            assert await a.recv() == "subscribed true"
            await b.send("pub py from python")
            assert await b.recv() == "delivered 1"
            assert await a.recv() == "from python"

    run(main())


def test_a_throwing_handler_closes_with_1011_and_the_reason(project_server):
    async def main():
        async with websockets.connect(f"{project_server}/websockets/v4/service/throws") as ws:
            await ws.send("break")
            with pytest.raises(websockets.ConnectionClosedError) as closed:
                await ws.recv()
            assert closed.value.rcvd.code == 1011
            assert "TypeError" in closed.value.rcvd.reason

    run(main())


def test_unknown_and_broken_endpoints_are_refused(project_server):
    async def main():
        with pytest.raises(InvalidStatus) as unknown:
            await websockets.connect(f"{project_server}/websockets/v4/service/nowhere")
        assert unknown.value.response.status_code == 404
        with pytest.raises(InvalidStatus) as broken:
            await websockets.connect(f"{project_server}/websockets/v4/service/syntax")
        assert broken.value.response.status_code == 503
        assert b"z-bad/syntax-error.js:2" in broken.value.response.body

    run(main())


def test_the_demo_project_has_a_script_endpoint(server):
    async def main():
        async with websockets.connect(f"{server}/websockets/v4/service/shout") as ws:
            assert (await ws.recv()).startswith("welcome, you are connection number")
            await ws.send("quiet")
            assert await ws.recv() == "QUIET"

    run(main())
