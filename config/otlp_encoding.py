"""OTLP trace requests serialised straight to protobuf bytes, without message objects.

The OTLP exporters build one protobuf message object per span, attribute, value and
status and then serialise them: about 13 µs per span of CPU in the exporter's thread,
competing with the requests for the GIL and the CPU. ``encode_spans`` writes the same
bytes directly (about a third of the time): the wire format of
``opentelemetry/proto/collector/trace/v1/trace_service.proto``, with the fields, their
order, the grouping by resource and scope, and the values exactly as the SDK's encoder
(``opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans``) gives them; the
tests compare the two byte for byte. A batch holding a value this does not write
(a mapping, or anything the SDK's encoder would log and skip) is left to the SDK's
encoder, whole.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

_DOUBLE = struct.Struct("<d")
_FIXED64 = struct.Struct("<Q")
_FIXED32 = struct.Struct("<I")
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class Unsupported(Exception):
    """A value this encoder does not write; the SDK's encoder takes the batch."""


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _BYTE[value]
    if value < 0:
        value += 1 << 64  # int64 as two's complement, ten bytes
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_BYTE = [bytes((i,)) for i in range(256)]
_LENGTH_TAG = [_varint(number << 3 | 2) for number in range(17)]


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    size = len(payload)
    return _LENGTH_TAG[number] + (_BYTE[size] if size < 0x80 else _varint(size)) + payload


def _string(number: int, value: str | None) -> bytes:
    return _field(number, value.encode()) if value else b""


def _uint(number: int, value: int | None) -> bytes:
    return _varint(number << 3) + _varint(value) if value else b""


# AnyValue's fields: string 1, bool 2, int64 3, double 4, array 5, kvlist 6, bytes 7. They
# are a oneof, so a set member is written even when it holds its type's zero value.
def _any_value(value: Any) -> bytes:
    kind = type(value)
    if kind is str:
        return _field(1, value.encode())
    if kind is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if kind is int:
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise Unsupported("an integer outside int64")  # the SDK's encoder skips it
        return b"\x18" + _varint(value)
    if kind is float:
        return b"\x21" + _DOUBLE.pack(value)
    if kind is bytes:
        return _field(7, value)
    if value is None:
        return b""
    if isinstance(value, str | bool | int | float | bytes):  # subclasses: as the SDK would
        raise Unsupported(kind)
    if isinstance(value, Sequence):
        return _field(5, b"".join(_field(1, _any_value(item)) for item in value))
    raise Unsupported(kind)


def _attributes(number: int, attributes: Any) -> bytes:
    """``repeated KeyValue`` (key 1, value 2), in the mapping's order."""
    if not attributes:
        return b""
    parts = []
    cache = _KEY_VALUES
    for key, value in attributes.items():
        kind = type(value)
        if kind is str or kind is int or kind is bool:  # not float: -0.0 == 0.0
            cached = cache.get((number, key, kind, value))
            if cached is None:
                if len(cache) >= _CACHE_SIZE:
                    cache.clear()
                cached = cache[number, key, kind, value] = _field(
                    number, _string(1, key) + _field(2, _any_value(value))
                )
            parts.append(cached)
        else:
            parts.append(_field(number, _string(1, key) + _field(2, _any_value(value))))
    return b"".join(parts)


# Encoded key-value pairs: a command's spans repeat the same ones (db.system, the
# operation, the account), so most are encoded once. Keyed by the value's type as well,
# since True == 1.
_KEY_VALUES: dict[tuple[int, str, type, Any], bytes] = {}
_CACHE_SIZE = 4096


def _trace_state(trace_state: Any) -> str | None:
    if trace_state is None:
        return None
    return ",".join(f"{key}={value}" for key, value in trace_state.items())


def _flags(parent: Any) -> bytes:
    flags = _HAS_IS_REMOTE | (_IS_REMOTE if parent and parent.is_remote else 0)
    return b"\x85\x01" + _FIXED32.pack(flags)  # field 16, fixed32


def _span(span: Any) -> bytes:
    context = span.get_span_context()
    parent = span.parent
    out = [
        b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + context.span_id.to_bytes(8, "big"),
        _string(3, _trace_state(context.trace_state)),
        b"\x22\x08" + parent.span_id.to_bytes(8, "big") if parent else b"",
        _string(5, span.name),
        _uint(6, span.kind.value + 1),  # SpanKind: the SDK's value plus one
        b"\x39" + _FIXED64.pack(span.start_time) if span.start_time else b"",
        b"\x41" + _FIXED64.pack(span.end_time) if span.end_time else b"",
        _attributes(9, span.attributes),
        _uint(10, span.dropped_attributes),
    ]
    for event in span.events or ():
        out.append(
            _field(
                11,
                (b"\x09" + _FIXED64.pack(event.timestamp) if event.timestamp else b"")
                + _string(2, event.name)
                + _attributes(3, event.attributes)
                + _uint(4, event.dropped_attributes),
            )
        )
    out.append(_uint(12, span.dropped_events))
    for link in span.links or ():
        out.append(
            _field(
                13,
                b"\x0a\x10"
                + link.context.trace_id.to_bytes(16, "big")
                + b"\x12\x08"
                + link.context.span_id.to_bytes(8, "big")
                + _attributes(4, link.attributes)
                + _uint(5, link.dropped_attributes)
                + b"\x35"  # field 6, fixed32
                + _FIXED32.pack(_HAS_IS_REMOTE | (_IS_REMOTE if link.context.is_remote else 0)),
            )
        )
    out.append(_uint(14, span.dropped_links))
    status = span.status
    if status is not None:
        out.append(_field(15, _string(2, status.description) + _uint(3, status.status_code.value)))
    out.append(_flags(parent))
    return b"".join(out)


def encode_spans(spans: Sequence[Any]) -> bytes:
    """The serialised ``ExportTraceServiceRequest`` for ``spans``.

    Raises:
        Unsupported: a value this does not write (the caller falls back to the SDK's).
    """
    try:
        return _request(spans)
    except UnicodeEncodeError as exc:  # a lone surrogate: the SDK's encoder decides
        raise Unsupported(exc) from exc


def _request(spans: Sequence[Any]) -> bytes:
    grouped: dict[Any, dict[Any, list[bytes]]] = {}
    for span in spans:
        scopes = grouped.setdefault(span.resource, {})
        scopes.setdefault(span.instrumentation_scope or None, []).append(_span(span))
    requests = []
    for resource, scopes in grouped.items():
        scope_spans = []
        for scope, encoded in scopes.items():
            body = (
                _string(1, scope.name)
                + _string(2, scope.version)
                + _attributes(3, scope.attributes)
                if scope is not None
                else b""
            )
            scope_spans.append(
                _field(
                    2,
                    _field(1, body)
                    + b"".join(_field(2, span) for span in encoded)
                    + _string(3, scope.schema_url if scope is not None else None),
                )
            )
        requests.append(
            _field(
                1,
                _field(1, _attributes(1, resource.attributes))
                + b"".join(scope_spans)
                + _string(3, resource.schema_url),
            )
        )
    return b"".join(requests)


def encode_request(spans: Sequence[Any]) -> Any:
    """What the SDK's ``encode_spans`` returns (an ``ExportTraceServiceRequest``), made from
    ``encode_spans``' bytes: parsing them back in protobuf's C code costs far less than
    building the messages in Python. Falls back to the SDK's encoder when it must."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import (
        encode_spans as sdk_encode_spans,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    try:
        return ExportTraceServiceRequest.FromString(encode_spans(spans))
    except Unsupported:
        return sdk_encode_spans(spans)


def install() -> list[str]:
    """Make the OTLP span exporters (HTTP and gRPC) encode with ``encode_request``.

    Each exporter module calls the name ``encode_spans`` it imported from the SDK's
    encoder; that name is pointed at ``encode_request``, which returns the same message
    with the same bytes. Returns the modules changed.
    """
    import importlib

    changed = []
    for name in (
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    ):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if callable(getattr(module, "encode_spans", None)):
            module.encode_spans = encode_request  # type: ignore[attr-defined]
            changed.append(name)
    return changed
