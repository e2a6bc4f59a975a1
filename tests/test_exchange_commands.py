"""``wsfinal exchange SCENARIO`` (simulator.exchange_commands): serves a scenario's nodes live, refuses a bad
scenario."""

from __future__ import annotations

from typing import Any

import pytest
from _server_helpers import EARLY, ping_rtt, recv, run
from websockets.asyncio.client import connect

pytestmark = pytest.mark.live


SCENARIO = """
name: cli-test
description: one node with a latency fault, for the exchange command
seed: 3
duration: 10s
nodes:
  - id: node-x
    port: 0
    service: {distribution: constant, value: 1ms, workers: 1}
    symbols: [tBTCUSD]
clients:
  connections:
    - {type: market_data, node: node-x, count: 1}
  workload: []
faults:
  - {kind: latency, at: 0s, duration: 10s, node: node-x, direction: down, latency: 100ms}
"""


def test_exchange_command_serves_a_scenario(tmp_path: Any) -> None:
    import subprocess
    import sys

    path = tmp_path / "cli.yaml"
    path.write_text(SCENARIO)
    cmd = [sys.executable, "-m", "benchmarks.cli", "exchange", str(path), "--duration", "1.5"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        node_id, address = line.split(" -> ")
        assert node_id == "node-x" and address.startswith("ws://127.0.0.1:")

        async def main() -> float:
            async with connect(address, ping_interval=None, open_timeout=2) as ws:
                await recv(ws)
                return await ping_rtt(ws)

        assert run(main()) >= 0.1 - EARLY  # the scenario's latency fault applies
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_exchange_command_rejects_a_bad_scenario(tmp_path: Any) -> None:
    from benchmarks.cli import main

    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nnodes: 3\n")
    assert main(["exchange", str(path), "--duration", "0"]) == 2
