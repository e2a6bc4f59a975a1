"""The official Bitfinex Python client (bitfinex-api-py 4.0.0, unmodified) against ``wsfinal exchange`` (issue #3).

bfxapi pins websockets 12, so it lives in its own venv, ``.venv-bfx`` (``bash tools/compat_venv.sh``). Each test
starts the exchange in a subprocess on port 0, runs ``tools/bfx_official_client.py`` with that venv's python and
checks the JSON report the driver prints. Live traffic for a few seconds per test, so deselected by default::

    bash tools/compat_venv.sh && .venv/bin/python -m pytest -q -p no:cacheprovider -m slow tests/test_official_client.py
"""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BFX_PYTHON = ROOT / ".venv-bfx" / "bin" / "python"
DRIVER = ROOT / "tools" / "bfx_official_client.py"
WSFINAL = Path(sys.executable).with_name("wsfinal")
KEY, SECRET, CID = "bfx-key", "bfx-secret", 8_675_309


pytestmark = [pytest.mark.slow, pytest.mark.live, pytest.mark.compat, pytest.mark.timeout(120)]

SCENARIO = """\
name: official-client
description: one node for the official Bitfinex client (tests/test_official_client.py)
seed: 3
duration: 90s
nodes:
  - id: node-a
    service: {distribution: constant, value: 1ms, workers: 1}
    heartbeat_interval: 500ms
    symbols: [tBTCUSD]
    api_keys: {%(key)s: %(secret)s}
clients:
  connections:
    - {type: trading, node: node-a, api_key: %(key)s}
"""


@pytest.fixture
def bfx_python() -> Path:
    if not BFX_PYTHON.exists():
        pytest.fail(
            f"{BFX_PYTHON.relative_to(ROOT)} is missing: the official client needs its own venv "
            "(bitfinex-api-py pins websockets 12). Create it with `bash tools/compat_venv.sh` from the repo root."
        )
    return BFX_PYTHON


@contextlib.contextmanager
def exchange(tmp_path: Path, *, tls: bool = False, faults: str = "") -> Iterator[tuple[str, str | None]]:
    """Serve a one-node scenario with ``wsfinal exchange`` in a subprocess; yields (url, CA file or None)."""
    if not WSFINAL.exists():
        pytest.fail(f"{WSFINAL} is missing: install the project (`make venv`)")
    scenario = tmp_path / "official-client.yaml"
    scenario.write_text(SCENARIO % {"key": KEY, "secret": SECRET} + faults)
    cmd = [str(WSFINAL), "exchange", str(scenario), "--port", "0", "--duration", "90", *(["--tls"] if tls else [])]
    with (tmp_path / "exchange.err").open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=tmp_path)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        url = ca = None
        while url is None:
            line = lines.get(timeout=30)
            if line is None:
                pytest.fail(f"wsfinal exchange exited: {(tmp_path / 'exchange.err').read_text()[-2000:]}")
            if line.startswith("self-signed TLS: trust the CA certificate "):
                ca = line.rsplit(" ", 1)[1].strip()
            elif line.startswith("node-a -> "):
                url = line.split(" -> ", 1)[1].strip()
        yield url, ca
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


def run_driver(python: Path, url: str, *args: str, secret: str = SECRET, cafile: str | None = None) -> dict[str, Any]:
    """Run the driver in the compat venv; returns its JSON report (the last line of its stdout)."""
    cmd = [str(python), str(DRIVER), url, "--api-key", KEY, "--api-secret", secret, "--cid", str(CID), *args]
    if cafile is not None:
        cmd += ["--cafile", cafile]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=90, cwd=ROOT)
    out = [line for line in done.stdout.splitlines() if line.strip()]
    assert out, f"no report (exit {done.returncode}); stderr:\n{done.stderr[-3000:]}"
    report: dict[str, Any] = json.loads(out[-1])
    assert report["ok"] == (done.returncode == 0), done.returncode
    assert report["ok"], f"failures: {report['failures']}\nreport: {json.dumps(report)[:4000]}\n{done.stderr[-3000:]}"
    return report


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
def test_official_client_subscribes_trades_and_stays_connected(bfx_python: Path, tmp_path: Path, tls: bool) -> None:
    with exchange(tmp_path, tls=tls) as (url, ca):
        assert url.startswith("wss://" if tls else "ws://") and (ca is not None) == tls
        report = run_driver(bfx_python, url, cafile=ca)
    assert report["library"]["bitfinex-api-py"] == "4.0.0" and report["library"]["websockets"].startswith("12.")
    assert report["errors"] == [] and report["failures"] == []
    events = report["events"]
    for once in ("open", "authenticated", "t_trades_snapshot", "t_book_snapshot"):
        assert events[once] == 1, once
    for snapshot in ("order_snapshot", "position_snapshot", "wallet_snapshot"):
        assert events[snapshot] == 1, snapshot  # the account snapshots after auth ("os", "ps", "ws")
    assert events["subscribed"] == 3
    assert events["t_ticker_update"] >= 1 and events["t_trade_execution"] >= 1 and events["t_book_update"] >= 3
    subs = {s["channel"]: s for s in report["subscriptions"]}
    assert set(subs) == {"ticker", "trades", "book"} and all(s["symbol"] == "tBTCUSD" for s in subs.values())
    assert (subs["book"]["prec"], subs["book"]["freq"], subs["book"]["len"]) == ("P0", "F0", "25")
    assert all(s["sub_id"] for s in subs.values())  # our subscribed event echoes subId; bfxapi keys on it
    # bfxapi only passes the checksum on; the driver rebuilt the book from bfxapi's events and checked every one
    checksum = report["checksum"]
    assert checksum["library_verifies"] is False and checksum["mismatches"] == []
    assert checksum["verified_by_driver"] == events["checksum"] >= 3
    assert 0 < report["book_levels"]["bids"] <= 25 and 0 < report["book_levels"]["asks"] <= 25
    assert report["auth"]["status"] == "OK"
    order = report["order"]
    assert (order["type"], order["status"], order["code"], order["cid"]) == ("on-req", "SUCCESS", None, CID)
    assert (order["symbol"], order["order_type"], order["order_status"]) == ("tBTCUSD", "EXCHANGE LIMIT", "ACTIVE")
    assert (order["amount"], order["price"]) == (0.01, 25000.5) and isinstance(order["id"], int)
    # the README form, without a cid: accepted, and the exchange gave it one
    assert events["on-req-notification"] == 2
    (other,) = report["other_orders"]
    assert other["status"] == "SUCCESS" and isinstance(other["cid"], int) and other["cid"] > 0
    # each accepted order is followed by its order-new message ("on"), which bfxapi turns into order_new
    assert events["order_new"] == 2
    new = {o["id"]: o for o in report["orders_new"]}
    assert set(new) == {order["id"], other["id"]} and new[order["id"]]["cid"] == CID
    assert new[other["id"]]["cid"] == other["cid"] and new[order["id"]]["status"] == "ACTIVE"
    # heartbeats (500 ms in the scenario) flowed on channel 0 and the connection was still open after the hold
    assert report["heartbeats"]["0"] >= 2 and report["hold"]["heartbeats_0"] >= 1 and report["hold"]["events"] > 0
    assert report["open_at_end"] is True and report["connections_opened"] == 2  # account + public bucket
    assert report["disconnected"] == [[1000, ""]]  # only our own close at the end


def test_official_client_refuses_a_wrong_secret(bfx_python: Path, tmp_path: Path) -> None:
    with exchange(tmp_path) as (url, _):
        report = run_driver(bfx_python, url, "--expect-auth-failure", "--timeout", "15", secret="not-the-secret")
    assert report["raised"].startswith("InvalidCredentialError")


def test_official_client_reconnects_after_info_20051(bfx_python: Path, tmp_path: Path) -> None:
    # bfxapi must be connected before the first 20051 (at 5 s); it then waits 1-4 s (its own random backoff),
    # reconnects, and the driver stops after a 2 s hold, well before 20 s. The second 20051 is for a driver that
    # started too late on a loaded machine and missed the first.
    faults = "faults:\n" + "".join(f"  - {{kind: info_reconnect, at: {t}s, node: node-a}}\n" for t in (5, 20))
    with exchange(tmp_path, faults=faults) as (url, _):
        report = run_driver(bfx_python, url, "--expect-reconnect", "--timeout", "40")
    assert report["info_codes"]["20051"] >= 1
    assert report["connections_opened"] == 4 and report["auth_ok_frames"] == 2
    after = report["after_reconnect"]
    assert after["t_ticker_update"] >= 1 and after["t_book_update"] >= 1
    assert report["heartbeats"]["0_after_reconnect"] >= 1 and report["open_at_end"] is True
    assert report["checksum"]["mismatches"] == [] and report["checksum"]["verified_by_driver"] >= 3
    assert report["errors"] == []
