"""The wire contract the official Bitfinex Python client (bitfinex-api-py 4.0.0) relies on, with a raw client.

tests/test_official_client.py runs bfxapi itself (slow, needs .venv-bfx); this module pins, in the default suite,
every message shape bfxapi reads from our exchange, sending exactly what bfxapi sends (its auth message, its
``conf``, its subscribe events with a uuid ``subId`` and ``len`` as a string, its JSON-encoded order with numbers
as strings and None fields dropped). Each check names the bfxapi code that would break without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import uuid
import zlib
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from simulator.faults import Fault
from simulator.scenario import NodeSpec, ServiceSpec
from simulator.server import ExchangeServer

pytestmark = pytest.mark.live

KEY, SECRET = "bfx-key", "bfx-secret"
CHECKSUM_FLAG = 131_072  # bfxapi's _CHECKSUM_FLAG_VALUE, sent by every public-channel bucket


@contextlib.asynccontextmanager
async def serving(faults: Sequence[Fault] = ()) -> AsyncIterator[str]:
    spec = NodeSpec(
        id="node-a",
        service=ServiceSpec("constant", 1, {"value": 0.001}),
        symbols=("tBTCUSD",),
        api_keys={KEY: SECRET},
        heartbeat_interval_s=0.2,
        market_update_interval_s=0.02,
    )
    async with ExchangeServer([spec], faults=faults, seed=5) as server:
        yield server.urls["node-a"]


@contextlib.asynccontextmanager
async def client(url: str) -> AsyncIterator[ClientConnection]:
    async with connect(url, ping_interval=None, open_timeout=2, close_timeout=1) as ws:
        yield ws


async def recv_until(ws: ClientConnection, pred: Any, timeout: float = 2.0) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await ws.recv())
            if pred(message):
                return message


def bfxapi_auth(key: str, secret: str, nonce: int) -> str:
    """bfxapi's Connection._get_authentication_message, field for field (``filter`` null, nonce in µs)."""
    message: dict[str, Any] = {"event": "auth", "filter": None, "apiKey": key, "authNonce": nonce}
    message["authPayload"] = f"AUTH{nonce}"
    message["authSig"] = hmac.new(secret.encode(), message["authPayload"].encode(), hashlib.sha384).hexdigest()
    return json.dumps(message)


def js_number(value: float) -> str:
    """Number#toString as bfxapi users (and Bitfinex's own libraries) format a parsed price or amount."""
    if isinstance(value, int):
        return str(value)
    text = format(Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def checksum_of(book: dict[float, list[Any]]) -> int:
    bids = sorted((lv for lv in book.values() if lv[2] > 0), key=lambda lv: -lv[0])[:25]
    asks = sorted((lv for lv in book.values() if lv[2] < 0), key=lambda lv: lv[0])[:25]
    parts: list[str] = []
    for i in range(25):
        for side in (bids, asks):
            if i < len(side):
                parts += [js_number(side[i][0]), js_number(side[i][2])]
    return zlib.crc32(":".join(parts).encode()) & 0xFFFFFFFF  # bfxapi emits `value & 0xFFFFFFFF`


def test_info_on_connect_has_version_2_and_info_codes_carry_a_code() -> None:
    async def main() -> None:
        async with serving([Fault("info_reconnect", at_s=0.5)]) as url, client(url) as ws:
            info = json.loads(await ws.recv())
            # bfx_websocket_client.__connect: `message["version"] != 2` raises VersionMismatchError
            assert info["event"] == "info" and info["version"] == 2 and info["platform"] == {"status": 1}
            # ...and an info event without "version" is read as message["code"] (KeyError if absent); 20051 makes
            # bfxapi raise ConnectionClosedError(1012) and reconnect
            restart = await recv_until(ws, lambda m: isinstance(m, dict) and m.get("event") == "info")
            assert "version" not in restart and restart["code"] == 20051

    asyncio.run(main())


def test_public_bucket_flow_conf_subscribe_snapshots_updates_and_checksums() -> None:
    async def main() -> None:
        async with serving() as url, client(url) as ws:
            await recv_until(ws, lambda m: isinstance(m, dict) and m.get("event") == "info")
            # bfx_websocket_bucket.__recover_state sends conf first, then each pending subscribe
            await ws.send(json.dumps({"event": "conf", "flags": CHECKSUM_FLAG}))
            subs = {
                "ticker": {"symbol": "tBTCUSD"},
                "trades": {"symbol": "tBTCUSD"},
                "book": {"symbol": "tBTCUSD", "prec": "P0", "freq": "F0", "len": "25"},
            }
            sub_ids = {}
            for channel, kwargs in subs.items():
                sub_ids[channel] = str(uuid.uuid4())
                await ws.send(
                    json.dumps({**kwargs, "event": "subscribe", "channel": channel, "subId": sub_ids[channel]})
                )
            chans: dict[int, str] = {}
            book: dict[float, list[Any]] = {}
            seen: dict[str, int] = {}
            verified = 0
            async with asyncio.timeout(5):
                while verified < 3 or len(seen) < 6:
                    m = json.loads(await ws.recv())
                    if isinstance(m, dict):
                        if m["event"] == "subscribed":
                            # __on_subscribed reads message["chan_id"] and message["sub_id"] (snake-cased)
                            assert m["subId"] == sub_ids[m["channel"]] and isinstance(m["chanId"], int)
                            if m["channel"] == "book":
                                assert (m["prec"], m["freq"], m["len"]) == ("P0", "F0", "25")
                            chans[m["chanId"]] = m["channel"]
                        else:
                            assert m["event"] == "conf" and m["status"] == "OK", m
                        continue
                    channel, body = chans[m[0]], m[1:]
                    if body[0] == "hb":
                        continue
                    if channel == "ticker":  # TradingPairTicker.parse(*stream[0]): 10 fields
                        assert len(body) == 1 and len(body[0]) == 10
                        seen["ticker"] = 1
                    elif channel == "trades" and body[0] in ("te", "tu"):  # TradingPairTrade: 4 fields
                        assert len(body[1]) == 4
                        seen[body[0]] = 1
                    elif channel == "trades":  # a snapshot: a list of 4-field lists
                        assert all(isinstance(t, list) and len(t) == 4 for t in body[0])
                        seen["trades_snapshot"] = 1
                    elif body[0] == "cs":  # checksum handler: stream[1] & 0xFFFFFFFF
                        assert type(body[1]) is int and -(2**31) <= body[1] < 2**31
                        assert body[1] & 0xFFFFFFFF == checksum_of(book)
                        verified += 1
                    elif all(isinstance(level, list) for level in body[0]):  # book snapshot: 3-field levels
                        assert "book_snapshot" not in seen and all(len(level) == 3 for level in body[0])
                        book = {level[0]: level for level in body[0]}
                        seen["book_snapshot"] = 1
                    else:  # TradingPairBook.parse(*stream[0]): price, count, amount; count 0 removes
                        price, count, _ = body[0]
                        if count == 0:
                            book.pop(price, None)
                        else:
                            book[price] = body[0]
                        seen["book_update"] = 1
            assert set(seen) == {"ticker", "te", "tu", "trades_snapshot", "book_snapshot", "book_update"}

    asyncio.run(main())


def test_account_flow_auth_snapshots_order_notification_and_heartbeats() -> None:
    async def main() -> None:
        async with serving() as url, client(url) as ws:
            await recv_until(ws, lambda m: isinstance(m, dict) and m.get("event") == "info")
            await ws.send(bfxapi_auth(KEY, SECRET, 1_764_000_000_000_000))
            auth = await recv_until(ws, lambda m: isinstance(m, dict))
            assert auth["event"] == "auth" and auth["status"] == "OK" and auth["chanId"] == 0
            snapshots = [await recv_until(ws, lambda m: isinstance(m, list)) for _ in range(3)]
            # AuthEventsHandler: an empty list is an empty snapshot (order_snapshot, position_snapshot, ...)
            assert sorted(s[1] for s in snapshots) == ["os", "ps", "ws"] and all(s[2] == [] for s in snapshots)
            # bfxapi's JSONEncoder: floats become strings, None fields are dropped
            order = {"type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.01", "price": "25000.5", "cid": 99}
            await ws.send(json.dumps([0, "on", None, order]))
            note = await recv_until(ws, lambda m: isinstance(m, list) and m[1] == "n")
            mts, kind, message_id, _, data, code, status, text = note[2]
            assert (kind, message_id, code, status) == ("on-req", None, None, "SUCCESS") and isinstance(mts, int)
            # serializers.Order has 32 labels: ID, GID, CID, SYMBOL, ... ORDER_STATUS at 13, PRICE at 16
            assert len(data) == 32 and isinstance(data[0], int) and data[2] == 99 and data[3] == "tBTCUSD"
            assert (data[6], data[8], data[13], data[16]) == (0.01, "EXCHANGE LIMIT", "ACTIVE", 25000.5)
            assert text
            # channel-0 heartbeats (bfxapi skips `message[1] == "hb"`) keep coming while nothing else is sent
            async with asyncio.timeout(2):
                beats = 0
                while beats < 2:
                    m = json.loads(await ws.recv())
                    beats += m == [0, "hb"]

    asyncio.run(main())


def test_a_wrong_secret_gets_an_auth_event_whose_status_is_not_ok() -> None:
    async def main() -> None:
        async with serving() as url, client(url) as ws:
            await ws.send(bfxapi_auth(KEY, "wrong", 1_764_000_000_000_001))
            auth = await recv_until(ws, lambda m: isinstance(m, dict) and m.get("event") == "auth")
            # __connect: `message["status"] != "OK"` raises InvalidCredentialError
            assert auth["status"] == "FAILED" and auth["code"] == 10100

    asyncio.run(main())
