"""Event messages: what the events feed takes from an S3 notification, and what it refuses."""

from __future__ import annotations

import json

import pytest

from replicator.events import Malformed, parse


def test_parse_decodes_keys_and_skips_what_is_not_a_change() -> None:
    body = json.dumps({"Records": [
        {"eventName": "ObjectCreated:Put", "eventTime": "2026-11-29T10:00:00.000Z",
         "s3": {"object": {"key": "a+b%2Bc%C3%A9", "size": 5, "eTag": "abc", "sequencer": "0A"}}},
        {"eventName": "ObjectRemoved:Delete", "eventTime": "2026-11-29T10:00:01.000Z",
         "s3": {"object": {"key": "gone", "sequencer": "0B"}}},
        {"eventName": "ObjectRestore:Completed", "eventTime": "2026-11-29T10:00:01.000Z",
         "s3": {"object": {"key": "cold"}}}]})
    (put, seq1), (delete, seq2) = parse(body)
    assert (put.key, put.kind.value, put.etag, put.size, seq1) == ("a b+cé", "put", "abc", 5, "0A")
    assert (delete.key, delete.kind.value, seq2) == ("gone", "delete", "0B")
    assert parse(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})) == []
    for bad in ("not json", "[1]", json.dumps({"Records": [{"eventName": "ObjectCreated:Put"}]})):
        with pytest.raises(Malformed):
            parse(bad)
