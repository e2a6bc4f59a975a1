"""Bitfinex WebSocket API v2 frames for the client: typed events, the parser, and the messages the client sends.

Part of :mod:`wsfinal.bitfinex_client` (which re-exports every name here): :func:`parse` turns one decoded frame
into a typed event; :func:`order_frame`, :func:`auth_message` and :func:`conf_message` build what the client
sends. Pure: no sockets, no clock.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from .exceptions import ProtocolViolation

INFO_RECONNECT = 20051
INFO_MAINTENANCE_START = 20060
INFO_MAINTENANCE_END = 20061
#: conf flags
FLAG_SEQ_ALL = 65536
FLAG_CHECKSUM = 131072
#: Number of levels per side that the book checksum covers.
CHECKSUM_DEPTH = 25


# --- events ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Info:
    code: int | None
    message: str = ""
    version: int | None = None
    platform_status: int | None = None


@dataclass(frozen=True, slots=True)
class Subscribed:
    chan_id: int
    channel: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    chan_id: int


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    code: int | None
    message: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Auth:
    ok: bool
    code: int | None
    message: str


@dataclass(frozen=True, slots=True)
class Pong:
    cid: int | None


@dataclass(frozen=True, slots=True)
class Conf:
    ok: bool
    flags: int | None


@dataclass(frozen=True, slots=True)
class OtherEvent:
    """An event object this client does not act on."""

    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    chan_id: int
    seq: int | None


@dataclass(frozen=True, slots=True)
class Checksum:
    chan_id: int
    value: int
    seq: int | None


@dataclass(frozen=True, slots=True)
class ChannelData:
    chan_id: int
    payload: Any
    seq: int | None
    #: The message type for channel 0 (``"n"``, ``"os"``, ``"te"``...) or for trades (``"te"``/``"tu"``).
    kind: str | None = None


@dataclass(frozen=True, slots=True)
class OrderNotification:
    """An ``n`` notification about a request (``on-req``, ``oc-req``...) of ours, matched by ``cid``."""

    request_type: str
    cid: int | None
    ok: bool
    code: int | None
    text: str
    seq: int | None


Event = (
    Info
    | Subscribed
    | Unsubscribed
    | ErrorEvent
    | Auth
    | Pong
    | Conf
    | OtherEvent
    | Heartbeat
    | Checksum
    | ChannelData
    | OrderNotification
)


# --- parsing -----------------------------------------------------------------------------------------------


#: The frame decoder: orjson, a strict RFC 8259 parser several times quicker than ``json.loads`` on exchange frames
#: (docs/request_path.md). Values are ``json.loads``'s for every RFC 8259 document within 64-bit integers; it refuses
#: what json accepts beyond the RFC (``NaN``, ``Infinity``, numbers that overflow a double, unpaired surrogates), and
#: reads an integer beyond 64 bits as a float. Bitfinex sends none of these. Errors are
#: :class:`orjson.JSONDecodeError`, a ``ValueError``; invalid UTF-8 is one too.
_loads: Callable[[str | bytes], Any] = orjson.loads


def decode(data: str | bytes) -> Any:
    """JSON-decode one frame. Raises :class:`ProtocolViolation` if it is not valid UTF-8 JSON."""
    try:
        return _loads(data)
    except ValueError as exc:
        raise ProtocolViolation(f"undecodable frame ({len(data)} bytes): {exc}") from None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _seq(msg: list[Any], index: int) -> int | None:
    return _int_or_none(msg[index]) if len(msg) > index else None


def parse(msg: Any) -> Event:
    """Classify one decoded frame. Raises :class:`ProtocolViolation` for frames of neither known shape."""
    if isinstance(msg, dict):
        return _parse_event(msg)
    if isinstance(msg, list) and msg and _int_or_none(msg[0]) is not None and len(msg) >= 2:
        return _parse_channel(msg)
    raise ProtocolViolation(f"frame is neither an event object nor a channel array: {str(msg)[:80]!r}")


def _parse_event(msg: dict[str, Any]) -> Event:
    kind = msg.get("event")
    if kind == "info":
        platform = msg.get("platform")
        status = _int_or_none(platform.get("status")) if isinstance(platform, dict) else None
        return Info(_int_or_none(msg.get("code")), str(msg.get("msg", "")), _int_or_none(msg.get("version")), status)
    if kind == "subscribed":
        chan_id = _int_or_none(msg.get("chanId"))
        if chan_id is None:
            raise ProtocolViolation(f"subscribed event without an integer chanId: {msg!r}")
        return Subscribed(chan_id, str(msg.get("channel", "")), msg)
    if kind == "unsubscribed":
        chan_id = _int_or_none(msg.get("chanId"))
        if chan_id is None:
            raise ProtocolViolation(f"unsubscribed event without an integer chanId: {msg!r}")
        return Unsubscribed(chan_id)
    if kind == "error":
        return ErrorEvent(_int_or_none(msg.get("code")), str(msg.get("msg", "")), msg)
    if kind == "auth":
        ok = msg.get("status") == "OK"
        return Auth(ok, _int_or_none(msg.get("code")), str(msg.get("msg", "")))
    if kind == "pong":
        return Pong(_int_or_none(msg.get("cid")))
    if kind == "conf":
        return Conf(msg.get("status") == "OK", _int_or_none(msg.get("flags")))
    return OtherEvent(msg)


def _parse_channel(msg: list[Any]) -> Event:
    chan_id: int = msg[0]
    second = msg[1]
    if second == "hb":
        return Heartbeat(chan_id, _seq(msg, 2))
    if second == "cs":
        value = _int_or_none(msg[2]) if len(msg) > 2 else None
        if value is None:
            raise ProtocolViolation(f"checksum frame without an integer checksum: {str(msg)[:80]!r}")
        return Checksum(chan_id, value, _seq(msg, 3))
    if isinstance(second, str):
        payload = msg[2] if len(msg) > 2 else None
        if chan_id == 0 and second == "n":
            note = _parse_notification(payload, _seq(msg, 3))
            if note is not None:
                return note
        # channel 0 carries [0, TYPE, DATA, SEQ, AUTH_SEQ]; public typed frames [CHAN, TYPE, DATA, SEQ]
        return ChannelData(chan_id, payload, _seq(msg, 3), second)
    return ChannelData(chan_id, second, _seq(msg, 2))


def _parse_notification(payload: Any, seq: int | None) -> OrderNotification | None:
    # [MTS, TYPE, MESSAGE_ID, null, NOTIFY_INFO, CODE, STATUS, TEXT]
    if not isinstance(payload, list) or len(payload) < 7 or not isinstance(payload[1], str):
        return None
    request_type = payload[1]
    if not request_type.endswith("-req"):
        return None
    info = payload[4]
    cid = None
    if isinstance(info, list) and len(info) > 2:
        cid = _int_or_none(info[2])  # order array: [ID, GID, CID, SYMBOL, ...]
    elif isinstance(info, dict):
        cid = _int_or_none(info.get("cid"))
    status = payload[6]
    text = payload[7] if len(payload) > 7 and isinstance(payload[7], str) else ""
    return OrderNotification(request_type, cid, status == "SUCCESS", _int_or_none(payload[5]), text, seq)


# --- messages the client sends -------------------------------------------------------------------------------


def order_frame(order: Mapping[str, Any], cid: int) -> list[Any]:
    """The ``[0, "on", null, {...}]`` order input with ``cid`` set."""
    body = dict(order)
    body["cid"] = cid
    return [0, "on", None, body]


def auth_message(api_key: str, api_secret: str, nonce: int) -> dict[str, Any]:
    """The ``auth`` event: HMAC-SHA384 over ``"AUTH" + nonce`` with the secret, hex-encoded."""
    payload = f"AUTH{nonce}"
    sig = hmac.new(api_secret.encode(), payload.encode(), hashlib.sha384).hexdigest()
    return {"event": "auth", "apiKey": api_key, "authSig": sig, "authPayload": payload, "authNonce": nonce}


def conf_message(*, seq_all: bool, checksum: bool) -> dict[str, Any]:
    return {"event": "conf", "flags": (FLAG_SEQ_ALL if seq_all else 0) | (FLAG_CHECKSUM if checksum else 0)}
