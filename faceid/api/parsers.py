"""Request body parsers of the API: DRF's, with a nesting limit on JSON.

Python's json module parses recursively: a body of a few thousand ``[`` raises RecursionError,
which no DRF handler expects (a 500). The depth is measured before parsing, in one linear pass
that does not recurse, and a body nested deeper than MAX_JSON_DEPTH is a 400 ``malformed_request``.
No request of this API needs more than a handful of levels.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.settings import api_settings
from rest_framework.utils import json as drf_json

MAX_JSON_DEPTH = 32

# A JSON string literal (escapes included), written so that the regex engine never backtracks.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPEN = (ord("["), ord("{"))
_CLOSE = (ord("]"), ord("}"))


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON body (brackets inside strings ignored)."""
    structure = np.frombuffer(_STRING.sub(b'""', body), dtype=np.uint8)
    if structure.size == 0:
        return 0
    steps = np.isin(structure, _OPEN).astype(np.int64) - np.isin(structure, _CLOSE).astype(np.int64)
    return int(max(np.cumsum(steps).max(), 0))


class DepthLimitedJSONParser(JSONParser):
    """DRF's JSONParser, refusing bodies nested deeper than MAX_JSON_DEPTH before parsing them."""

    max_depth = MAX_JSON_DEPTH

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding") or api_settings.DEFAULT_CHARSET or "utf-8"
        body = stream.read() if stream is not None else b""
        try:
            text = body.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"JSON parse error - the body is not {encoding} text ({exc})") from None
        if json_depth(text.encode("utf-8")) > self.max_depth:
            raise ParseError(f"JSON parse error - nested deeper than {self.max_depth} levels")
        parse_constant = drf_json.strict_constant if self.strict else None
        try:
            return json.loads(text, parse_constant=parse_constant)
        except RecursionError:  # the depth check above should make this unreachable
            raise ParseError("JSON parse error - nested too deeply") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
