"""A JSON parser that turns every malformed body into a 400, never a 500."""

from __future__ import annotations

import codecs
import json
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding  # type: ignore[attr-defined]

# (``get_encoding`` is new in DRF 3.18: the type stubs, made for 3.16, the newest that match
# django-stubs 5.2, do not know it yet.)


class SafeJSONParser(JSONParser):
    """DRF's JSON parser plus what it misses.

    Deeply nested JSON raises RecursionError, undecodable bytes UnicodeDecodeError; DRF's
    parser only catches ValueError, so both would be 500s. NaN and Infinity are refused
    (``STRICT_JSON``), and so is an object that names a key twice (``{"amount_cents": 1,
    "amount_cents": 100}``: which one the client meant is anybody's guess, and parsers
    disagree). Non-object bodies are left to the serializers (400 there).
    """

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        encoding = get_encoding(parser_context or {})
        try:
            decoded = codecs.getreader(encoding)(stream)
            return json.load(
                decoded, parse_constant=json_strict_constant, object_pairs_hook=unique_keys
            )
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply") from None
        except (ValueError, UnicodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's members as a dict; a key given twice is an error."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {key!r} is given twice")
        result[key] = value
    return result


def json_strict_constant(value: str) -> Any:
    raise ValueError(f"{value} is not valid JSON")
