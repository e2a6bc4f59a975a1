"""The integration manager: the seed usage as written, live on loopback against the fake exchange, and the same
manager on the in-memory transport in virtual time."""

import asyncio
import dataclasses
import random

import pytest

from simulator.faults import Fault
from simulator.memory import MemoryNetwork, MemoryTransport
from simulator.node import ExchangeNode
from simulator.scenario import NodeSpec, ServiceSpec
from simulator.server import ExchangeServer
from simulator.virtual import run_virtual
from wsfinal import (
    CapacityError,
    ConnectionConfig,
    ConnectionState,
    ConnectionType,
    IntegrationConfig,
    LoadBalancingStrategy,
)
from wsfinal.connection import ManagedConnection
from wsfinal.manager import WebSocketIntegrationManager
from wsfinal.requests import OutcomeKind

KEY, SECRET = "test-key", "test-secret"
ORDER = {"type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "1", "price": "1"}
SPEC = NodeSpec(
    id="n1",
    service=ServiceSpec("constant", 2, {"value": 0.001}),
    symbols=("tBTCUSD", "tETHUSD"),
    api_keys={KEY: SECRET},
)


def test_seed_usage_runs_as_written_live():
    async def main():
        async with ExchangeServer([SPEC], seed=1) as server:
            url = server.urls["n1"] + "/ws/2"
            manager = WebSocketIntegrationManager(
                IntegrationConfig(
                    max_connections=1000,
                    enable_analytics=True,
                    enable_alerts=True,
                    enable_load_balancing=True,
                    cluster_node_id="node-1",
                    health_check_interval=1,
                    analytics_interval=1,
                    alert_check_interval=1,
                )
            )
            await manager.start()

            config = ConnectionConfig(
                url=url,
                connection_type=ConnectionType.MARKET_DATA,
                max_reconnect_attempts=5,
                heartbeat_interval_seconds=30,
            )
            ids = []
            for i in range(2):
                connection = ManagedConnection(config, connection_id=f"md-{i}", rng=random.Random(i))
                ok = await manager.register_connection(connection, config)
                assert ok
                ids.append(connection.connection_id)

            conn = await manager.get_connection(
                ConnectionType.MARKET_DATA, strategy=LoadBalancingStrategy.LEAST_LATENCY
            )
            assert conn is not None and conn.connection_id in ids
            assert await conn.send_message({"event": "subscribe", "channel": "ticker", "symbol": "tBTCUSD"})

            results = await manager.broadcast_message({"event": "ping"}, connection_type=ConnectionType.MARKET_DATA)
            assert results == dict.fromkeys(ids, True)
            results = await manager.broadcast_message({"event": "system_update"})
            assert set(results) == set(ids)

            await asyncio.sleep(1.2)  # one round of every periodic job
            overview = manager.get_system_overview()
            assert 0 <= overview["health"]["overall_health_score"] <= 100
            assert overview["connections"]["active"] == 2 and overview["connections"]["total"] == 2
            info = manager.get_connection_info(ids[0])
            assert info is not None and 0 <= info["health_score"] <= 100
            assert manager.get_connection_info("connection-id") is None

            for m in manager.analytics.get_performance_metrics(ConnectionType.MARKET_DATA, hours=24):
                assert m.avg_latency_ms >= 0 or m.avg_latency_ms != m.avg_latency_ms
                assert 0 <= m.error_rate <= 1 and m.message_throughput >= 0
            for a in manager.analytics.get_anomalies(severity="high", hours=1):
                assert a.anomaly_type and a.severity and a.description
            for alert in manager.alert_manager.get_active_alerts():
                assert alert.title and alert.severity.value and alert.message
            summary = manager.alert_manager.get_alert_summary()
            assert summary["total_active_alerts"] >= summary["critical_alerts"] >= 0
            assert 0 <= manager.analytics.get_connection_health_score(ids[0]) <= 100
            for _strategy, m in manager.load_balancer.get_strategy_performance().items():
                assert 0 <= m["success_rate"] <= 1
            await manager.stop()
            assert [t for c in manager.connections() for t in c.tasks] == []
            assert all(c.state is not ConnectionState.CONNECTED for c in manager.connections())

    asyncio.run(main())


#: The one in-memory exchange node of :func:`one_node`.
NODE_URL = "ws://127.0.0.1:7001/ws/2"


def one_node(seed):
    """A started in-memory exchange node at :data:`NODE_URL`: (network, node). The caller stops the node."""
    network = MemoryNetwork()
    node = ExchangeNode(SPEC, seed=seed)
    network.add("127.0.0.1:7001", node)
    node.start()
    return network, node


def one_more_connection(cls, config, connection_id, network):
    """A trading connection of class ``cls`` (a ManagedConnection subclass) to :func:`one_node`'s network."""
    return cls(
        config, connection_id=connection_id, transport=MemoryTransport(network), rng=random.Random(9),
        api_key=KEY, api_secret=SECRET, nonce=iter(range(10**7, 10**8)).__next__,
    )  # fmt: skip


def trading_connections(n, url, transport=None):
    config = ConnectionConfig(url=url, connection_type=ConnectionType.TRADING, message_timeout_seconds=2.0)
    return config, [
        ManagedConnection(
            config,
            connection_id=f"tr-{i}",
            transport=transport,
            rng=random.Random(i),
            api_key=KEY,
            api_secret=SECRET,
            nonce=iter(range(10**6, 10**7)).__next__,
        )
        for i in range(n)
    ]


def test_submit_routes_requests_and_accounts_for_each_live():
    async def main():
        async with ExchangeServer([SPEC], seed=2) as server:
            url = server.urls["n1"] + "/ws/2"
            async with WebSocketIntegrationManager(IntegrationConfig(health_check_interval=1)) as manager:
                config, conns = trading_connections(3, url)
                for c in conns:
                    assert await manager.register_connection(c, config)
                futures = [
                    manager.submit(
                        {"type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.1", "price": "100"},
                        ConnectionType.TRADING,
                        LoadBalancingStrategy.ROUND_ROBIN,
                    )
                    for _ in range(30)
                ]
                outcomes = await asyncio.gather(*futures)
                assert all(o.kind is OutcomeKind.ACKNOWLEDGED for o in outcomes)
                assert {o.connection_id for o in outcomes} == {"tr-0", "tr-1", "tr-2"}
                nothing = await manager.submit({}, ConnectionType.USER_DATA)
                assert nothing.kind is OutcomeKind.NO_CONNECTION
                summary = manager.request_summary()
                assert summary["submitted"] == 31 == summary["finished"] + summary["in_flight"]
                perf = manager.load_balancer.get_strategy_performance()[LoadBalancingStrategy.ROUND_ROBIN]
                assert perf["selections"] == 30 and perf["success_rate"] == 1.0

    asyncio.run(main())


def test_capacity_and_disabled_components():
    async def main():
        manager = WebSocketIntegrationManager(
            IntegrationConfig(
                max_connections=1, enable_analytics=False, enable_alerts=False, enable_load_balancing=False
            )
        )
        assert manager.analytics is None and manager.alert_manager is None and manager.load_balancer is None
        network, node = one_node(0)
        config, conns = trading_connections(2, NODE_URL, MemoryTransport(network))
        async with manager:
            assert await manager.register_connection(conns[0], config)
            assert not await manager.register_connection(conns[0], config)  # same id again
            with pytest.raises(CapacityError, match="max_connections=1"):
                await manager.register_connection(conns[1], config)
            # Without the balancer, get_connection still works (plain round robin).
            assert (await manager.get_connection(ConnectionType.TRADING)) is conns[0]
            outcome = await manager.submit(ORDER, ConnectionType.TRADING)
            assert outcome.ok
        node.stop()

    run_virtual(main())


def exchange_nodes(network, ids, faults=(), seed=5):
    """Exchange nodes ``ids`` (SPEC's service) on ``network``, started now, at 127.0.0.1:7001, :7002...;
    returns ``{node_id: (node, url)}``. Fault times count from here."""
    nodes = {}
    for i, node_id in enumerate(ids):
        spec = dataclasses.replace(SPEC, id=node_id, network_latency_s=0.05)  # 100 ms round trips: some in flight
        node = ExchangeNode(spec, faults=[f for f in faults if f.node == node_id], seed=seed)
        nodes[node_id] = (node, network.add(f"127.0.0.1:{7001 + i}", node))
        node.start()
    return nodes


def connections_to(urls_by_id, transport, **kw):
    """One trading connection per ``{connection_id: url}`` item, reconnecting quickly (backoff cap 0.5 s)."""
    out = []
    for i, (cid, url) in enumerate(urls_by_id.items()):
        config = ConnectionConfig(
            url=url,
            connection_type=ConnectionType.TRADING,
            message_timeout_seconds=2.0,
            reconnect_delay_seconds=0.1,
            max_reconnect_attempts=50,
        )
        conn = ManagedConnection(
            config, connection_id=cid, transport=transport, rng=random.Random(i), api_key=KEY, api_secret=SECRET,
            nonce=iter(range(10**6 * (i + 1), 10**6 * (i + 2))).__next__, backoff_cap_s=0.5, **kw,
        )  # fmt: skip
        out.append((conn, config))
    return out


#: Node n1 goes down (every link aborted, new connections refused with 503) from 1 s to 3 s; both nodes from
#: 6 s to 7 s. Requests are submitted every 10 ms from 0 to 9 s.
OUTAGES = [
    Fault("node_down", at_s=1.0, duration_s=2.0, node="n1"),
    Fault("node_down", at_s=6.0, duration_s=1.0, node="n1"),
    Fault("node_down", at_s=6.0, duration_s=1.0, node="n2"),
]
S = ConnectionState
ON_N1, ON_N2 = {"tr-0", "tr-1"}, {"tr-2", "tr-3"}


def test_a_node_going_down_is_routed_around_then_no_connection_then_reconnected_in_virtual_time():
    async def main():
        loop = asyncio.get_running_loop()
        network = MemoryNetwork()
        nodes = exchange_nodes(network, ["n1", "n2"], OUTAGES)
        t0 = loop.time()
        n1_url, n2_url = nodes["n1"][1], nodes["n2"][1]
        urls = {"tr-0": n1_url, "tr-1": n1_url, "tr-2": n2_url, "tr-3": n2_url}
        manager = WebSocketIntegrationManager(IntegrationConfig(seed=11, health_check_interval=1))
        outcomes = []
        states = {}  # submit time -> states of the n1 connections in the store
        async with manager:
            for conn, config in connections_to(urls, MemoryTransport(network)):
                assert await manager.register_connection(conn, config)
            for k in range(900):
                await asyncio.sleep(max(t0 + k * 0.01 - loop.time(), 0.0))
                states[k] = {manager.store.get(c).state for c in ON_N1}
                manager.submit(
                    ORDER, ConnectionType.TRADING, LoadBalancingStrategy.POWER_OF_TWO_CHOICES, on_done=outcomes.append
                )
            await asyncio.sleep(3.0)  # every request ends (message timeout 2 s)
            overview = manager.get_system_overview()
            summary = manager.request_summary()
            totals = manager.store.request_totals()
            records = {c: (r.reconnects, r.state) for c, r in ((c, manager.store.get(c)) for c in urls)}
            results = await manager.broadcast_message({"event": "ping"})
        for node, _ in nodes.values():
            node.stop()
        assert len(outcomes) == 900
        at = [(round(o.submitted_at - t0, 6), o.connection_id, o.kind) for o in outcomes]

        # n1 down (1 s to 3 s): its connections are seen lost, requests go to n2 and are acknowledged
        assert S.CONNECTED not in states[110]
        during = [(c, kind) for t, c, kind in at if 1.005 <= t < 3.0]
        assert len(during) >= 199 and all(c in ON_N2 and kind is OutcomeKind.ACKNOWLEDGED for c, kind in during)
        lost = [(t, c) for t, c, kind in at if kind is OutcomeKind.CONNECTION_LOST]
        # lost: only requests in flight (a round trip is 100 ms) when their node went down
        assert lost and all((0.9 <= t < 1.0 and c in ON_N1) or 5.9 <= t < 6.0 for t, c in lost)
        # n1 back: its connections reconnect and are used again before the second outage
        back = {c for t, c, kind in at if 3.0 <= t < 6.0 and kind is OutcomeKind.ACKNOWLEDGED}
        assert back == ON_N1 | ON_N2
        # both down (6 s to 7 s): no connection is left, the manager says so at once
        none_left = [kind for t, c, kind in at if 6.005 <= t < 7.0]
        assert len(none_left) >= 99 and set(none_left) == {OutcomeKind.NO_CONNECTION}
        # The manager's own NO_CONNECTION carries no connection id. None comes from a connection: one that is
        # lost leaves CONNECTED (and the balancer's choice) at the loss itself, not at its supervisor's next step,
        # so a request routed at that very instant (1.0 s, 6.0 s) goes to a connection still up, or to nobody.
        refused = {t for t, c, kind in at if kind is OutcomeKind.NO_CONNECTION and c is not None}
        assert not refused
        assert {kind for t, c, kind in at if t == 1.0} == {OutcomeKind.ACKNOWLEDGED}
        # and after: everything reconnected and answering
        assert {c for t, c, kind in at if t >= 8.0 and kind is OutcomeKind.ACKNOWLEDGED} == ON_N1 | ON_N2
        assert all(n >= 1 and state is S.CONNECTED for n, state in records.values())
        assert records["tr-0"][0] > records["tr-2"][0]  # n1 went down twice
        assert results == dict.fromkeys(urls, True)

        # the store accounts for every request the manager took: no_connection beside the connections' counts
        assert summary["submitted"] == 900 == totals["submitted"] and summary["in_flight"] == 0
        assert totals["ok"] == summary["acknowledged"] and totals["no_connection"] == summary["no_connection"]
        failed = sum(summary[k] for k in ("rejected", "timed_out", "connection_lost", "not_sent"))
        assert totals["failed"] == failed and totals["not_sent"] == summary["not_sent"]
        by_type = {"trading": totals["no_connection"]}
        assert overview["store"]["requests"] == {**totals, "no_connection_by_type": by_type}
        # the manager's own: from the second outage until the first connection is back
        assert all(6.0 <= t < 8.0 for t, c, kind in at if kind is OutcomeKind.NO_CONNECTION and c is None)
        return at

    first = run_virtual(main())
    assert first == run_virtual(main())  # the same seeds and clock: the same history, request for request


def test_every_routed_outcome_reaches_the_balancer_before_the_caller_sees_it():
    async def main():
        network, node = one_node(5)
        config, conns = trading_connections(2, NODE_URL, MemoryTransport(network))
        async with WebSocketIntegrationManager(IntegrationConfig(seed=3, health_check_interval=1)) as manager:
            for c in conns:
                await manager.register_connection(c, config)
            balancer = manager.load_balancer
            kind = LoadBalancingStrategy.LEAST_CONNECTIONS
            seen_by_balancer = []

            def check(fut):  # a done-callback of the caller: the balancer already counted this outcome
                seen_by_balancer.append(balancer.get_strategy_performance()[kind]["requests"])

            futures = [manager.submit(ORDER, ConnectionType.TRADING, kind) for _ in range(40)]
            for fut in futures:
                fut.add_done_callback(check)
            outcomes = await asyncio.gather(*futures)
            assert all(o.kind is OutcomeKind.ACKNOWLEDGED for o in outcomes)
            # the k-th callback to run sees at least k outcomes counted (answers read together are counted together)
            assert len(seen_by_balancer) == 40
            assert all(n >= k for k, n in enumerate(seen_by_balancer, start=1))
            perf = balancer.get_strategy_performance()[kind]
            assert (perf["selections"], perf["requests"], perf["successes"]) == (40, 40, 40)
            assert all(manager.store.get(c.connection_id).outstanding == 0 for c in conns)
            # an outcome decided at submit (maintenance: NOT_SENT) is reported too
            conns[0].protocol.paused = True
            conns[1].protocol.paused = True
            outcome = await manager.submit(ORDER, ConnectionType.TRADING, kind)
            assert outcome.kind is OutcomeKind.NOT_SENT
            assert balancer.get_strategy_performance()[kind]["failures"] == 1
            # and counted against the connection it was meant for, as a failed request that was not sent
            record = manager.store.get(outcome.connection_id)
            assert (record.requests_not_sent, record.requests_failed, record.outstanding) == (1, 1, 0)
            conns[0].protocol.paused = conns[1].protocol.paused = False
            assert await manager.unregister_connection("tr-0")
            assert conns[0].outcome_hook is None and conns[1].outcome_hook is not None
            for c in conns:
                c.ledger.check()
        node.stop()

    run_virtual(main())


class _OldStyleConnection(ManagedConnection):
    """A connection whose ``submit`` predates ``on_done`` (and ``tag``): the manager must fall back to callbacks."""

    def submit(self, request, timeout=None):
        return super().submit(request, timeout)


def test_submit_on_done_gets_each_outcome_once_after_the_balancer_and_before_the_future(caplog):
    async def main():
        network, node = one_node(5)
        url = NODE_URL
        config, conns = trading_connections(2, url, MemoryTransport(network))
        old = one_more_connection(_OldStyleConnection, config, "old", network)
        async with WebSocketIntegrationManager(IntegrationConfig(seed=3, health_check_interval=1)) as manager:
            for c in [*conns, old]:
                await manager.register_connection(c, config)
            assert set(manager._fast_submit) == {"tr-0", "tr-1"}  # the old-style one gets the fallback
            balancer = manager.load_balancer
            kind = LoadBalancingStrategy.ROUND_ROBIN
            seen = []  # (outcome, requests the balancer had counted, whether the future was done)
            futures = []

            def on_done(outcome):
                counted = balancer.get_strategy_performance()[kind]["requests"]
                mine = [f for f in futures if f.done() and f.result() is outcome]
                seen.append((outcome, counted, bool(mine)))

            for _ in range(30):
                futures.append(manager.submit(ORDER, ConnectionType.TRADING, kind, on_done=on_done))
            outcomes = await asyncio.gather(*futures)
            assert {o.kind for o in outcomes} == {OutcomeKind.ACKNOWLEDGED}
            assert {o.connection_id for o in outcomes} == {"tr-0", "tr-1", "old"}
            assert sorted(o.cid for o, _, _ in seen) == sorted(o.cid for o in outcomes) and len(seen) == 30
            # every outcome had reached the balancer before on_done saw it
            assert all(counted >= k for k, (_, counted, _) in enumerate(seen, start=1))
            # synchronous on the connections that take on_done: their futures were not resolved yet
            assert all(not done for o, _, done in seen if o.connection_id != "old")
            # no connection of the type: on_done runs before submit returns
            seen.clear()
            nothing = manager.submit(ORDER, ConnectionType.USER_DATA, on_done=on_done)
            assert [o.kind for o, _, _ in seen] == [OutcomeKind.NO_CONNECTION] and nothing.result() is seen[0][0]

            # a raising on_done is logged and changes nothing else
            def broken(outcome):
                raise RuntimeError("bug in the caller")

            with caplog.at_level("ERROR"):
                results = await asyncio.gather(
                    *[manager.submit(ORDER, ConnectionType.TRADING, kind, on_done=broken) for _ in range(3)]
                )
                manager.submit(ORDER, ConnectionType.USER_DATA, on_done=broken)
            assert {o.kind for o in results} == {OutcomeKind.ACKNOWLEDGED}
            assert sum("callback failed" in r.getMessage() for r in caplog.records) == 4
            summary = manager.request_summary()
            assert summary["submitted"] == 35 == summary["finished"] and summary["in_flight"] == 0
        node.stop()

    run_virtual(main())


def test_submit_on_done_without_a_load_balancer():
    async def main():
        network, node = one_node(1)
        config, conns = trading_connections(2, NODE_URL, MemoryTransport(network))
        manager = WebSocketIntegrationManager(IntegrationConfig(enable_load_balancing=False, health_check_interval=1))
        async with manager:
            for c in conns:
                await manager.register_connection(c, config)
            got = []
            futures = [manager.submit(ORDER, ConnectionType.TRADING, on_done=got.append) for _ in range(10)]
            outcomes = await asyncio.gather(*futures)
            assert got == outcomes and {o.kind for o in outcomes} == {OutcomeKind.ACKNOWLEDGED}
            assert {o.connection_id for o in outcomes} == {"tr-0", "tr-1"}
        node.stop()

    run_virtual(main())


class _NoNowConnection(ManagedConnection):
    """A connection whose ``submit`` takes ``tag`` and ``on_done`` but not ``now``: still called straight away."""

    def submit(self, request, timeout=None, *, tag=None, on_done=None):
        return super().submit(request, timeout, tag=tag, on_done=on_done)


def test_submit_hands_the_time_it_read_to_connections_that_take_it():
    async def main():
        network, node = one_node(4)
        url = NODE_URL
        config, conns = trading_connections(1, url, MemoryTransport(network))
        plain = one_more_connection(_NoNowConnection, config, "plain", network)
        given = []
        submit = conns[0].submit

        def spy(request, timeout=None, *, tag=None, on_done=None, now=None):
            given.append(now)
            return submit(request, timeout, tag=tag, on_done=on_done, now=now)

        conns[0].submit = spy  # the manager looks the bound submit up at registration
        async with WebSocketIntegrationManager(IntegrationConfig(seed=3, health_check_interval=1)) as manager:
            for c in [*conns, plain]:
                await manager.register_connection(c, config)
            assert {cid: takes_now for cid, (_, takes_now) in manager._fast_submit.items()} == {
                "tr-0": True,
                "plain": False,
            }
            loop = asyncio.get_running_loop()
            kind = LoadBalancingStrategy.ROUND_ROBIN
            outcomes = []
            for _ in range(6):
                now = loop.time()
                outcome = await manager.submit(ORDER, ConnectionType.TRADING, kind)
                assert outcome.kind is OutcomeKind.ACKNOWLEDGED and outcome.submitted_at == now
                outcomes.append(outcome)
                await asyncio.sleep(0.01)
            assert {o.connection_id for o in outcomes} == {"tr-0", "plain"}
            assert len(given) == 3 and all(isinstance(t, float) for t in given)
            assert sorted(given) == sorted(o.submitted_at for o in outcomes if o.connection_id == "tr-0")
        node.stop()

    run_virtual(main())
