"""The watch streams' JSON decoder: orjson's speed, the standard library's leniency."""

from __future__ import annotations

import json
import math

import pytest
from kopf._cogs.clients import api as kopf_api

from raykube.adapters import jsonwire
from raykube.handlers.registration import decode_watch_events_with_orjson

EVENT = {
    "type": "MODIFIED",
    "object": {"metadata": {"name": "c", "labels": {"ray.io/cluster": "c"}}, "spec": {"n": 3}},
}


def test_it_decodes_what_the_standard_library_decodes() -> None:
    line = json.dumps(EVENT)
    assert jsonwire.loads(line) == jsonwire.loads(line.encode()) == EVENT


@pytest.mark.parametrize("text", ['{"n": 123456789012345678901234567890}', '{"x": NaN}'])
def test_what_orjson_refuses_falls_back_to_the_standard_library(text: str) -> None:
    got, want = jsonwire.loads(text), json.loads(text)
    if isinstance(want["x" if "x" in want else "n"], float):
        assert math.isnan(got["x"])
    else:
        assert got == want


def test_text_with_a_lone_surrogate_still_decodes() -> None:
    text = '["' + chr(0xD800) + '"]'  # a str no UTF-8 encoder accepts
    assert jsonwire.loads(text) == json.loads(text) == [chr(0xD800)]


def test_invalid_json_is_still_an_error() -> None:
    with pytest.raises(ValueError):
        jsonwire.loads("{not json")


def test_kopfs_watch_streams_decode_with_it() -> None:
    decode_watch_events_with_orjson()
    decode_watch_events_with_orjson()  # twice: still the one stand-in, nothing wrapped
    shim = getattr(kopf_api, "json")  # noqa: B009 (kopf does not re-export it)
    assert shim.loads is jsonwire.loads
    assert shim.dumps is json.dumps
    assert shim.loads('{"n": 1e400, "big": 18446744073709551616}')["big"] == 2**64
