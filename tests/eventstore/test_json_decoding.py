"""Stored JSON decodes exactly as ``json.loads`` decodes it, on both vendors.

The store decodes payloads with orjson where that is exact. The hash chain is computed over
the canonical JSON of what was written and re-computed over what is read back, so any
difference (an integer beyond 64 bits turned into a float, a number out of a double's range,
a lone surrogate) would make an intact event look tampered with.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventstore as es
from eventstore.hashing import canonical_json
from eventstore.jsoncodec import loads as _loads

pytestmark = pytest.mark.django_db

EDGES = [
    123456789012345678901234567890,  # beyond 64 bits: orjson would make it a float
    -9223372036854775809,
    9223372036854775807,
    18446744073709551615,
    2**53 + 1,
    1e300,
    5e-324,
    -0.0,
    0.1,
    "digits in a string: 12345678901234567890",
    "\u00e9\u4e2d\U0001f600",
    {"nested": [1, [2, {"deep": 3.5}]], "": None, "b": True},
]

# What the store accepts: no NUL, no lone surrogates (InvalidEventError refuses them).
storable_text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"))
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | storable_text
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(storable_text, children, max_size=4)
    ),
    max_leaves=12,
)


def same(decoded, expected) -> bool:
    return canonical_json(decoded) == canonical_json(expected)


@pytest.mark.parametrize("value", EDGES, ids=repr)
def test_edge_values_decode_as_json_loads_decodes_them(value):
    text = canonical_json({"v": value})
    assert same(_loads(text), json.loads(text))
    assert same(_loads(text.encode()), json.loads(text))


@given(values)
@settings(max_examples=300, deadline=None)
def test_any_json_decodes_as_json_loads_decodes_it(value):
    text = canonical_json(value)
    assert same(_loads(text), json.loads(text))


@given(values)
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_what_the_database_gives_back_decodes_as_json_loads_decodes_it(value):
    """The text as the database returns it (jsonb reformats numbers on PostgreSQL)."""
    cast = "%s::jsonb::text" if connection.vendor == "postgresql" else "json(%s)"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {cast}", [canonical_json({"v": value})])
        stored = cursor.fetchone()[0]
    assert same(_loads(stored), json.loads(stored))


@pytest.mark.parametrize("value", [-0.0, 1e16, 1e300, -2.5e20])
def test_floats_that_would_not_read_back_as_written_are_refused(value):
    """jsonb keeps numbers as numeric: -0.0 reads back as 0.0, 1e300 as the integer 10**300,
    so the hash chain would call an intact event tampered with. Refused on both vendors."""
    stream = uuid.uuid4()
    event = es.NewEvent(event_type="Edge", data={"v": value}, occurred_at=datetime.now(UTC))
    with pytest.raises(es.InvalidEventError, match="would not read back as written"):
        es.append(stream, [event], stream_type="t", expected_version=0)
    assert es.stream_version(stream) == 0


def test_events_with_edge_values_verify_after_a_round_trip():
    # Everything the store accepts, floats included, verifies after the round trip.
    refused = ("1e+300", "-0.0")  # see the test above
    edges = [v for v in EDGES if not (isinstance(v, float) and repr(v) in refused)]
    edges.append(1e15 + 0.5)
    stream = uuid.uuid4()
    es.append(
        stream,
        [
            es.NewEvent(event_type="Edge", data={"v": value}, occurred_at=datetime.now(UTC))
            for value in edges
        ],
        stream_type="t",
        expected_version=0,
    )
    assert [e.data["v"] for e in es.read_stream(stream)] == edges
    first = es.read_stream(stream)[0].position
    followed = es.read_all(after_position=first - 1, limit=len(edges))
    assert [e.data["v"] for e in followed] == edges
    assert es.verify_stream(stream) is None  # intact
