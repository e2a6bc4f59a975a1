"""wsfinal.interface: the abstract connection interface and its listeners."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _connection_helpers import cfg

from wsfinal import ConnectionState
from wsfinal.interface import ConnectionEvent

pytestmark = pytest.mark.live
S = ConnectionState


def test_the_interface_is_abstract_and_its_listeners_cannot_break_a_connection() -> None:
    from wsfinal.interface import ConnectionMetrics, WebSocketConnectionInterface

    class Incomplete(WebSocketConnectionInterface):
        async def connect(self) -> bool:
            return True

    with pytest.raises(TypeError):
        Incomplete()  # type: ignore[abstract]

    class Mine(WebSocketConnectionInterface):
        def __init__(self) -> None:  # forgets super().__init__(): listeners still work
            self._config = cfg("ws://127.0.0.1:1/")

        async def connect(self) -> bool:
            self._emit("connected", 1.0, url=self._config.url)
            return True

        async def disconnect(self, reason: str = "manual") -> None:
            return None

        async def send_message(self, message: Any) -> bool:
            return True

        connection_id = property(lambda self: "mine")
        config = property(lambda self: self._config)
        state = property(lambda self: S.CONNECTED)
        metrics = property(lambda self: ConnectionMetrics())

    def broken(event: ConnectionEvent) -> None:
        raise RuntimeError("listener bug")

    seen: list[ConnectionEvent] = []
    conn = Mine()
    conn.add_listener(broken)
    conn.add_listener(seen.append)
    assert asyncio.run(conn.connect())
    assert [(e.kind, e.connection_id, e.detail) for e in seen] == [("connected", "mine", {"url": "ws://127.0.0.1:1/"})]
    conn.remove_listener(seen.append)
    conn.remove_listener(seen.append)  # unknown: ignored
    assert asyncio.run(conn.connect()) and len(seen) == 1
    assert conn.is_connected
