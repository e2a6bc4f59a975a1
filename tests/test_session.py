"""A connection's Session (wsfinal.session): it ends once, and tells on_end once."""

from __future__ import annotations

import asyncio

from wsfinal.backoff import RetryPolicy
from wsfinal.session import Session, SessionEnd
from wsfinal.traffic import Session as TrafficSession
from wsfinal.traffic import SessionEnd as TrafficSessionEnd


def test_the_first_end_wins_and_on_end_is_called_once_then_cleared() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        session = Session(channel=object(), opened_at=0.0, ended=loop.create_future())
        told: list[tuple[Session, SessionEnd]] = []
        session.on_end = lambda s, end: told.append((s, end))
        first = SessionEnd("closed (1000)", RetryPolicy.RETRY, 1000)
        session.end(first)
        session.end(SessionEnd("later", RetryPolicy.RETRY_NOW))
        assert session.ended.result() is first and told == [(session, first)] and session.on_end is None
        assert session.all_tasks() == []

    asyncio.run(main())


def test_traffic_still_exports_the_session_types() -> None:
    assert TrafficSession is Session and TrafficSessionEnd is SessionEnd
