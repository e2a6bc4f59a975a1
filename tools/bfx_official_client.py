"""Drive the official Bitfinex Python client (bitfinex-api-py, package ``bfxapi``), unmodified, against our exchange.

Runs INSIDE the compat venv (``bash tools/compat_venv.sh`` creates ``.venv-bfx``), never the project's venv:
bfxapi pins websockets 12. Start an exchange first (``wsfinal exchange SCENARIO``), then::

    .venv-bfx/bin/python tools/bfx_official_client.py ws://127.0.0.1:PORT --api-key K --api-secret S
    .venv-bfx/bin/python tools/bfx_official_client.py wss://127.0.0.1:PORT --cafile CA.pem ...  # --tls

Only bfxapi's public API is used (``Client(wss_host=...)``, ``wss.on(...)``, ``wss.subscribe``,
``wss.inputs.submit_order``, ``wss.close``). What the library does not surface is observed from outside it:
heartbeats (bfxapi drops them) through the DEBUG log of websockets' client, and the book checksum, which bfxapi
only passes on as a ``checksum`` event, is verified here against the book rebuilt from bfxapi's own book events.

Prints one JSON report on stdout (bfxapi logs to stderr) and exits 0 when every expectation held, 1 otherwise
(the report's ``failures`` say which). ``--expect-auth-failure`` (with a wrong secret) checks that bfxapi raises
its InvalidCredentialError instead; ``--expect-reconnect`` (a scenario with an ``info_reconnect`` fault) also waits
for bfxapi to reconnect after info 20051, re-authenticate and resubscribe.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import traceback
import zlib
from collections import Counter
from decimal import Decimal
from importlib.metadata import version
from typing import Any

#: Events this driver listens to (every one must be a name bfxapi's emitter accepts).
PUBLIC_EVENTS = (
    "t_ticker_update",
    "t_trades_snapshot",
    "t_trade_execution",
    "t_trade_execution_update",
    "t_book_snapshot",
    "t_book_update",
    "checksum",
)
ACCOUNT_EVENTS = ("order_snapshot", "position_snapshot", "wallet_snapshot", "notification")
#: Counts that must be reached before the hold period starts.
REQUIRED = {
    "open": 1,
    "authenticated": 1,
    "subscribed": 3,
    "t_ticker_update": 1,
    "t_trades_snapshot": 1,
    "t_trade_execution": 1,
    "t_book_snapshot": 1,
    "t_book_update": 3,
    "checksum": 3,
    "order_snapshot": 1,
    "on-req-notification": 2,
    "order_new": 2,
}


def js_number(value: float | int) -> str:
    """The text JavaScript's ``Number#toString`` gives (no exponent at these magnitudes, no trailing ``.0``)."""
    if isinstance(value, int):
        return str(value)
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def book_checksum(bids: dict[float, tuple[float, float]], asks: dict[float, tuple[float, float]]) -> int:
    """Bitfinex's checksum (unsigned, as bfxapi reports it): top 25 bids and asks interleaved, price:amount, CRC32."""
    top_bids = [bids[p] for p in sorted(bids, reverse=True)[:25]]
    top_asks = [asks[p] for p in sorted(asks)[:25]]
    parts: list[str] = []
    for i in range(25):
        if i < len(top_bids):
            parts += [js_number(top_bids[i][0]), js_number(top_bids[i][1])]
        if i < len(top_asks):
            parts += [js_number(top_asks[i][0]), js_number(top_asks[i][1])]
    return zlib.crc32(":".join(parts).encode()) & 0xFFFFFFFF


class FrameLog(logging.Handler):
    """Watches websockets' client DEBUG log: what bfxapi does not surface (heartbeats, connections opened).

    ``< TEXT ...`` records carry the received frame; ``= connection is OPEN`` one per connection (bfxapi opens
    one for the account and one per 25 subscriptions, and new ones when it reconnects).
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.received = 0
        self.opened = 0
        #: When each connection opened, in seconds since the driver's process started (for diagnosis).
        self.opened_at: list[float] = []
        self.keepalive_pongs = 0
        self.heartbeats: Counter[str] = Counter()
        self.auth_ok = 0
        self.info_codes: Counter[str] = Counter()

    @property
    def reconnected(self) -> bool:
        """More connections than the first account + public pair: bfxapi has reconnected."""
        return self.opened > 2

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "= connection is OPEN":
            self.opened += 1
            self.opened_at.append(round(record.relativeCreated / 1000.0, 3))
            return
        if record.msg == "% received keepalive pong":
            self.keepalive_pongs += 1
            return
        if not record.msg.startswith("<") or not record.args:
            return
        frame = record.args[0] if isinstance(record.args, tuple) else None
        data = getattr(frame, "data", None)
        if getattr(getattr(frame, "opcode", None), "name", "") != "TEXT" or not isinstance(data, bytes):
            return
        self.received += 1
        if data.endswith(b',"hb"]') or b',"hb",' in data:
            key = "0" if data.startswith(b"[0,") else "public"
            self.heartbeats[key] += 1
            if self.reconnected:
                self.heartbeats[key + "_after_reconnect"] += 1
        elif data.startswith(b'{"event":"auth"') and b'"status":"OK"' in data:
            self.auth_ok += 1
        elif data.startswith(b'{"event":"info"') and b'"code":' in data:
            self.info_codes[str(json.loads(data).get("code"))] += 1


class Driver:
    """One run: bfxapi's client on ``url``; records what it sees into :meth:`report`."""

    def __init__(self, args: argparse.Namespace) -> None:
        from bfxapi import Client

        self.args = args
        self.client = Client(
            api_key=args.api_key, api_secret=args.api_secret, wss_host=args.url, log_filename=None, timeout=None
        )
        self.wss = self.client.wss
        self.counts: Counter[str] = Counter()
        self.after_reconnect: Counter[str] = Counter()
        self.errors: list[str] = []
        self.subscriptions: list[dict[str, Any]] = []
        self.bids: dict[float, tuple[float, float]] = {}
        self.asks: dict[float, tuple[float, float]] = {}
        self.checksums_verified = 0
        self.checksum_mismatches: list[dict[str, Any]] = []
        self.checksums_unverifiable = 0
        self.order: dict[str, Any] = {}
        #: notifications of orders other than the one with --cid (the order sent without a cid)
        self.other_orders: list[dict[str, Any]] = []
        #: the order-new ("on") messages, as bfxapi's order_new event gives them
        self.orders_new: list[dict[str, Any]] = []
        self.auth: dict[str, Any] = {}
        self.disconnected: list[Any] = []
        self.ready = asyncio.Event()
        self.frames = FrameLog()
        self._tasks: set[asyncio.Task[Any]] = set()  # our own coroutines (subscribe, submit_order)

    # ------------------------------------------------------------------ handlers (sync: bfxapi emits in order)

    def _guard(self, name: str, fn: Any = None) -> Any:
        def handler(*payload: Any) -> None:
            self.counts[name] += 1
            if self.frames.reconnected:
                self.after_reconnect[name] += 1
            try:
                if fn is not None:
                    fn(*payload)
            except Exception as exc:
                self.errors.append(f"handler {name}: {type(exc).__name__}: {exc}")
            self._check_ready()

        self.wss.on(name, handler)
        return handler

    def install(self) -> None:
        self._guard("open", lambda: self._spawn(self._subscribe()))
        self._guard("subscribed", lambda sub: self.subscriptions.append(dict(sub)))
        self._guard("authenticated", self._on_auth)
        self._guard("on-req-notification", self._on_order)
        self._guard("order_new", self._on_order_new)
        self._guard("disconnected", lambda *a: self.disconnected.append(list(a)))
        self._guard("t_book_snapshot", self._on_book_snapshot)
        self._guard("t_book_update", lambda sub, level: self._apply(level))
        self._guard("checksum", self._on_checksum)
        for name in PUBLIC_EVENTS + ACCOUNT_EVENTS:
            if name not in ("t_book_snapshot", "t_book_update", "checksum"):
                self._guard(name)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self.errors.append(f"task: {type(exc).__name__}: {exc}")

    async def _subscribe(self) -> None:
        symbol = self.args.symbol
        await self.wss.subscribe("ticker", symbol=symbol)
        await self.wss.subscribe("trades", symbol=symbol)
        await self.wss.subscribe("book", symbol=symbol, prec="P0", freq="F0", len="25")

    def _on_auth(self, message: dict[str, Any]) -> None:
        self.auth = {k: message.get(k) for k in ("status", "userId", "caps")}
        inputs = self.wss.inputs
        order = inputs.submit_order(
            type="EXCHANGE LIMIT", symbol=self.args.symbol, amount=0.01, price=25000.5, cid=self.args.cid
        )
        self._spawn(order)
        # the form of bfxapi's README: no cid (the exchange gives the order one)
        self._spawn(inputs.submit_order(type="EXCHANGE LIMIT", symbol=self.args.symbol, amount=0.02, price=25001.0))

    def _on_order_new(self, order: Any) -> None:
        self.orders_new.append({"id": order.id, "cid": order.cid, "amount": order.amount, "status": order.order_status})

    def _on_order(self, note: Any) -> None:
        data = note.data
        if getattr(data, "cid", None) != self.args.cid:
            self.other_orders.append({"status": note.status, "id": getattr(data, "id", None), "cid": data.cid})
            return
        self.order = {
            "type": note.type,
            "status": note.status,
            "code": note.code,
            "text": note.text,
            "id": getattr(data, "id", None),
            "cid": getattr(data, "cid", None),
            "symbol": getattr(data, "symbol", None),
            "order_type": getattr(data, "order_type", None),
            "order_status": getattr(data, "order_status", None),
            "amount": getattr(data, "amount", None),
            "price": getattr(data, "price", None),
        }

    def _on_book_snapshot(self, sub: Any, levels: list[Any]) -> None:
        self.bids.clear()
        self.asks.clear()
        for level in levels:
            self._apply(level)

    def _apply(self, level: Any) -> None:
        side = self.bids if level.amount > 0 else self.asks
        if level.count == 0:
            (self.bids if level.amount == 1 else self.asks).pop(level.price, None)
        else:
            side[level.price] = (level.price, level.amount)
            (self.asks if side is self.bids else self.bids).pop(level.price, None)

    def _on_checksum(self, sub: Any, value: int) -> None:
        if self.frames.reconnected:
            # bfxapi resubscribes with the same sub_id and its emitter then drops the new t_book_snapshot (a
            # once-per-subscription event): its users cannot rebuild the book, nor can we. Counted, not checked.
            self.checksums_unverifiable += 1
            return
        mine = book_checksum(self.bids, self.asks)
        if mine == value:
            self.checksums_verified += 1
        elif len(self.checksum_mismatches) < 5:
            self.checksum_mismatches.append({"library": value, "ours": mine, "levels": len(self.bids) + len(self.asks)})

    def _reconnect_failures(self) -> list[str]:
        """What is missing of a reconnection after info 20051 (only with --expect-reconnect)."""
        frames, after = self.frames, self.after_reconnect
        wanted = {
            "info 20051 received": frames.info_codes["20051"],
            "connections opened (2 first, 2 after 20051)": frames.opened - 2,
            "auth OK after reconnecting": frames.auth_ok - 1,
            "channel-0 heartbeats after reconnecting": frames.heartbeats["0_after_reconnect"],
            "t_ticker_update after reconnecting": after["t_ticker_update"],
            "t_book_update after reconnecting": after["t_book_update"],
        }
        return [f"{k}: {v}" for k, v in wanted.items() if v < (2 if k.startswith("connections") else 1)]

    def _check_ready(self) -> None:
        heartbeats = self.frames.heartbeats["0"]
        if not all(self.counts[k] >= n for k, n in REQUIRED.items()) or heartbeats < self.args.min_heartbeats:
            return
        if self.args.expect_reconnect and self._reconnect_failures():
            return
        self.ready.set()

    # ------------------------------------------------------------------ the run

    async def run(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: self.errors.append(f"loop: {ctx.get('message')}"))
        started = loop.time()
        client = asyncio.create_task(self.wss.start())
        ready_after = hold_counts = None
        try:
            while not self.ready.is_set() and not client.done():
                self._check_ready()  # heartbeats arrive without any bfxapi event
                if loop.time() - started > self.args.timeout:
                    break
                await asyncio.sleep(0.05)
            if self.ready.is_set() and not client.done():
                ready_after = loop.time() - started
                before = sum(self.counts.values()), self.frames.received, self.frames.heartbeats["0"]
                await asyncio.sleep(self.args.hold)
                after = sum(self.counts.values()), self.frames.received, self.frames.heartbeats["0"]
                hold_counts = {
                    "events": after[0] - before[0],
                    "frames": after[1] - before[1],
                    "heartbeats_0": after[2] - before[2],
                }
            open_at_end = self.wss.open and not client.done()
            if not client.done():
                await self.wss.close()
            await asyncio.wait_for(client, timeout=5.0)
        except Exception as exc:
            self.errors.append(f"client: {type(exc).__name__}: {exc}")
            open_at_end = False
        finally:
            for task in [client, *self._tasks]:
                task.cancel()
        return self.report(ready_after, hold_counts, open_at_end, loop.time() - started)

    def report(
        self, ready_after: float | None, hold: dict[str, int] | None, open_at_end: bool, elapsed: float
    ) -> dict[str, Any]:
        failures = [f"{k}: saw {self.counts[k]}, want >= {n}" for k, n in REQUIRED.items() if self.counts[k] < n]
        if self.frames.heartbeats["0"] < self.args.min_heartbeats:
            failures.append(f"heartbeats on channel 0: saw {self.frames.heartbeats['0']}")
        if ready_after is None:
            failures.append(f"not everything seen within {self.args.timeout} s")
        if self.checksums_verified == 0 or self.checksum_mismatches:
            failures.append(f"checksums: {self.checksums_verified} verified, {self.checksum_mismatches} mismatched")
        if self.order.get("status") != "SUCCESS" or self.order.get("cid") != self.args.cid:
            failures.append(f"order notification: {self.order}")
        if [o["status"] for o in self.other_orders] != ["SUCCESS"] or not self.other_orders[0]["cid"]:
            failures.append(f"order without a cid: {self.other_orders}")
        noted = {self.order.get("id"), *(o["id"] for o in self.other_orders)}
        if {o["id"] for o in self.orders_new} != noted or len(self.orders_new) != len(noted):
            failures.append(f"order_new events {self.orders_new} do not match the notifications")
        if hold is None or hold["heartbeats_0"] < 1 or hold["events"] < 1:
            failures.append(f"during the {self.args.hold} s hold: {hold}")
        if not open_at_end:
            failures.append("connection not open at the end of the hold")
        if self.args.expect_reconnect:
            failures += [f"reconnect: {f}" for f in self._reconnect_failures()]
        if self.errors:
            failures.append(f"{len(self.errors)} error(s)")
        return {
            "library": {p: version(p) for p in ("bitfinex-api-py", "websockets", "pyee")},
            "url": self.args.url,
            "events": dict(sorted(self.counts.items())),
            "subscriptions": self.subscriptions,
            "auth": self.auth,
            "order": self.order,
            "other_orders": self.other_orders,
            "orders_new": self.orders_new,
            "checksum": {
                "library_verifies": False,
                "verified_by_driver": self.checksums_verified,
                "mismatches": self.checksum_mismatches,
                "unverifiable_after_reconnect": self.checksums_unverifiable,
            },
            "book_levels": {"bids": len(self.bids), "asks": len(self.asks)},
            "frames_received": self.frames.received,
            "connections_opened": self.frames.opened,
            "connections_opened_at_s": self.frames.opened_at,
            "info_codes": dict(self.frames.info_codes),
            "auth_ok_frames": self.frames.auth_ok,
            "keepalive_pongs": self.frames.keepalive_pongs,
            "after_reconnect": dict(sorted(self.after_reconnect.items())),
            "heartbeats": dict(self.frames.heartbeats),
            "ready_after_s": None if ready_after is None else round(ready_after, 3),
            "hold": hold,
            "open_at_end": open_at_end,
            "disconnected": self.disconnected,
            "elapsed_s": round(elapsed, 3),
            "errors": self.errors,
            "failures": failures,
            "ok": not failures,
        }


async def expect_auth_failure(args: argparse.Namespace) -> dict[str, Any]:
    """Connect with credentials the exchange must refuse: bfxapi raises InvalidCredentialError out of start()."""
    from bfxapi import Client
    from bfxapi.exceptions import InvalidCredentialError

    client = Client(api_key=args.api_key, api_secret=args.api_secret, wss_host=args.url, timeout=None)
    raised: str | None = None
    try:
        await asyncio.wait_for(client.wss.start(), timeout=args.timeout)
    except InvalidCredentialError as exc:
        raised = f"InvalidCredentialError: {exc}"
    except Exception as exc:
        raised = f"{type(exc).__name__}: {exc}"
    ok = raised is not None and raised.startswith("InvalidCredentialError")
    return {"url": args.url, "raised": raised, "failures": [] if ok else [f"raised {raised}"], "ok": ok}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", help="ws://127.0.0.1:PORT or wss://127.0.0.1:PORT (a node printed by `wsfinal exchange`)")
    p.add_argument("--api-key", required=True, help="a key from the node's api_keys")
    p.add_argument("--api-secret", required=True, help="its secret")
    p.add_argument("--cafile", default=None, help="CA certificate to trust for wss:// (printed by --tls)")
    p.add_argument("--symbol", default="tBTCUSD")
    p.add_argument("--cid", type=int, default=424242, help="client order id of the order sent")
    p.add_argument("--min-heartbeats", type=int, default=2, help="channel-0 heartbeats to see before the hold")
    p.add_argument("--hold", type=float, default=2.0, help="seconds to stay connected once everything was seen")
    p.add_argument("--timeout", type=float, default=20.0, help="give up after this many seconds")
    p.add_argument(
        "--expect-reconnect", action="store_true", help="the exchange sends info 20051: expect bfxapi to reconnect"
    )
    p.add_argument("--expect-auth-failure", action="store_true", help="the credentials are wrong: expect a refusal")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cafile:
        # bfxapi takes no SSL context: websockets 12 then uses ssl.create_default_context(), which reads this.
        os.environ["SSL_CERT_FILE"] = os.path.abspath(args.cafile)
    try:
        if args.expect_auth_failure:
            report = asyncio.run(expect_auth_failure(args))
        else:

            async def go() -> dict[str, Any]:
                driver = Driver(args)
                ws_log = logging.getLogger("websockets.client")
                ws_log.setLevel(logging.DEBUG)  # before connecting: websockets reads the level per connection
                ws_log.propagate = False
                ws_log.addHandler(driver.frames)
                driver.install()
                return await driver.run()

            report = asyncio.run(go())
    except Exception as exc:
        report = {"ok": False, "failures": [f"driver crashed: {exc!r}"], "traceback": traceback.format_exc()}
    print(json.dumps(report, default=repr), flush=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
