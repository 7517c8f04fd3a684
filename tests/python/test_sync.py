"""Store sync with Python `websockets` as the foreign peer: a v1 client written from
docs/sync-protocol.md alone, and fritz2's raw `syncWith` format (bare JSON entities, no
subprotocol) beside it."""

import asyncio
import json

import websockets

V1 = "switchboard.sync.v1"


async def recv_json(ws, kind=None):
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if kind is None or message["type"] == kind:
            return message


async def subscribe(url, client, since=None):
    ws = await websockets.connect(f"{url}/sync/people", subprotocols=[V1])
    assert ws.subprotocol == V1
    sub = {"type": "sub", "collection": "people", "client": client}
    if since is not None:
        sub["since"] = since
    await ws.send(json.dumps(sub))
    got = []
    while True:
        message = await recv_json(ws)
        got.append(message)
        if message["type"] in ("ready", "refetch"):
            return ws, got


def test_a_v1_client_and_a_fritz2_raw_client_see_each_others_writes(sync_server):
    async def run():
        v1, got = await subscribe(sync_server, "py-v1")
        assert got[0]["type"] == "snapshot" and got[-1]["type"] == "ready"
        start = got[-1]["version"]
        async with websockets.connect(f"{sync_server}/sync/people/ada") as raw:
            assert raw.subprotocol is None
            # fritz2 sends the whole entity as a text frame.
            await raw.send(json.dumps({"_id": "ada", "name": "Ada", "age": 36}))
            change = await recv_json(v1, "change")
            assert change["id"] == "ada" and change["version"] == start + 1
            assert change["data"] == {"_id": "ada", "name": "Ada", "age": 36}
            assert change["origin"]["client"].startswith("fritz2:")
            # A v1 write reaches the raw client as the bare entity; its own write never came back.
            await v1.send(json.dumps({"type": "mutate", "mutation_id": "py-1", "id": "ada",
                                      "data": {"_id": "ada", "name": "Ada", "age": 37}}))
            ack = await recv_json(v1, "ack")
            assert ack["version"] == start + 2
            assert json.loads(await asyncio.wait_for(raw.recv(), 5)) == {"_id": "ada", "name": "Ada", "age": 37}
        # A later raw connection starts from the entity as the server holds it.
        async with websockets.connect(f"{sync_server}/sync/people/ada") as raw:
            assert json.loads(await asyncio.wait_for(raw.recv(), 5))["age"] == 37
        await v1.close()

    asyncio.run(run())


def test_a_resumed_subscription_replays_what_it_missed_once(sync_server):
    async def run():
        writer, got = await subscribe(sync_server, "py-writer")
        seen = got[-1]["version"]
        for n in range(3):
            await writer.send(json.dumps({"type": "mutate", "mutation_id": f"w{n}", "id": f"e{n}", "data": {"n": n}}))
            await recv_json(writer, "ack")
        # Sent again after a "lost" ack: answered with the first version, not applied again.
        await writer.send(json.dumps({"type": "mutate", "mutation_id": "w1", "id": "e1", "data": {"n": 99}}))
        replay = await recv_json(writer, "ack")
        assert replay["version"] == seen + 2 and replay["data"] == {"n": 1}
        reader, got = await subscribe(sync_server, "py-reader", since=seen)
        assert [m["version"] for m in got[:-1]] == [seen + 1, seen + 2, seen + 3]
        assert got[-1] == {"type": "ready", "version": seen + 3}
        await reader.close()
        await writer.close()

    asyncio.run(run())


def test_a_protocol_violation_is_closed_with_1008_and_the_reason(sync_server):
    async def run():
        async with websockets.connect(f"{sync_server}/sync/people", subprotocols=[V1]) as ws:
            await ws.send('{"type":"mutate","id":"x"}')
            try:
                await asyncio.wait_for(ws.recv(), 5)
                raise AssertionError("the server should close")
            except websockets.ConnectionClosed as closed:
                assert closed.rcvd.code == 1008
                assert closed.rcvd.reason == "sync message: missing field `mutation_id`"

    asyncio.run(run())
