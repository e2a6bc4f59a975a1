"""``wsfinal exchange SCENARIO``: serve a scenario's exchange nodes live on loopback until interrupted.

Prints one ``node-id -> ws://host:port`` line per node once every port is bound (port 0 picks a free one), then
applies the scenario's fault timeline in real time. ``--tls`` serves ``wss://``; without ``--cert``/``--key`` a
self-signed certificate for 127.0.0.1 and localhost is made at start and its CA file printed for clients to trust.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

__all__ = ["register", "run_exchange"]


def register(subparsers: Any) -> None:
    """Add the ``exchange`` subcommand to the ``wsfinal`` command line."""
    p = subparsers.add_parser(
        "exchange",
        help="serve a scenario's fake exchange for your own bot",
        description=(
            "Serve the exchange nodes of SCENARIO (the fake Bitfinex API v2) on --host, so your own bot or the "
            "official client can connect. Prints one 'node-id -> ws://host:port' line per node once every port "
            "is bound, then applies the scenario's fault timeline in real time until Ctrl-C or --duration. "
            "--tls serves wss://: without --cert/--key a self-signed certificate for 127.0.0.1 and localhost is "
            "made at start and its CA file printed for clients to trust. See docs/exchange.md. Exit codes: "
            "0 stopped after --duration, 1 cannot serve (port in use, unreadable certificate), 2 bad arguments "
            "or scenario, 130 interrupted (Ctrl-C)."
        ),
    )
    p.add_argument("scenario", metavar="SCENARIO", help="scenario YAML file")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port of the first node, next nodes +1 (0 = any)")
    p.add_argument("--tls", action="store_true", help="serve wss:// (self-signed unless --cert/--key)")
    p.add_argument("--cert", default=None, help="PEM certificate chain for --tls")
    p.add_argument("--key", default=None, help="PEM private key for --tls")
    p.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from simulator.scenario import ScenarioError, load_scenario

    if (args.cert is None) != (args.key is None):
        print("wsfinal exchange: --cert and --key go together", file=sys.stderr)
        return 2
    if args.cert is not None and not args.tls:
        args.tls = True
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"wsfinal exchange: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(
            run_exchange(
                scenario,
                host=args.host,
                port=args.port,
                tls=args.tls,
                cert=args.cert,
                key=args.key,
                seed=args.seed,
                duration=args.duration,
            )
        )
    except OSError as exc:
        print(f"wsfinal exchange: cannot serve: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # asyncio.run cancelled run_exchange on Ctrl-C, then raised this
        print("wsfinal exchange: interrupted; stopped", file=sys.stderr)
        return 130
    return 0


async def run_exchange(
    scenario: Any,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    tls: bool = False,
    cert: str | None = None,
    key: str | None = None,
    seed: int | None = None,
    duration: float | None = None,
    out: Any = None,
) -> None:
    """Serve ``scenario`` until cancelled (Ctrl-C) or ``duration`` seconds; print the URLs to ``out``.

    Returns after ``duration``; a cancellation stops the servers and propagates (``asyncio.run`` turns a Ctrl-C
    into KeyboardInterrupt, which the command exits 130 on).
    """
    from simulator.server import ExchangeServer, make_tls_context

    out = out or sys.stdout
    context = None
    if tls:
        context, ca_path = make_tls_context(cert, key)
        if ca_path is not None:
            print(f"self-signed TLS: trust the CA certificate {ca_path}", file=out, flush=True)
    kwargs: dict[str, Any] = {"host": host, "port": port, "ssl": context}
    if seed is not None:
        kwargs["seed"] = seed
    server = ExchangeServer.from_scenario(scenario, **kwargs)
    async with server:
        for node_id, url in server.urls.items():
            print(f"{node_id} -> {url}", file=out, flush=True)
        if duration is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(duration)
