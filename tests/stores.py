"""The stores the exactly-once tests run against, each case once per store.

- ``fast``: mongomock with the sink's ``_id`` fast path, which checks the fence conditions with
  the sink's own code;
- ``mongomock``: mongomock with that fast path off, so its own matcher judges the fences;
- ``server``: the real MongoDB-wire server at ``MONGO_URI`` (marked ``integration``).

Import the fixture into a test module: ``from stores import store  # noqa: F401``.
"""
from __future__ import annotations

import uuid
from typing import Any

import pytest

import streamkit_mongodb


class Store:
    """A database for one test: its URI, name and a client, and the ``mongodb`` sink block for it."""

    def __init__(self, kind: str, uri: str, database: str, client: Any) -> None:
        self.kind = kind
        self.uri = uri
        self.database = database
        self.client = client

    @property
    def db(self) -> Any:
        return self.client[self.database]

    def sink(self, **options: Any) -> dict:
        return {"type": "mongodb", "uri": self.uri, "database": self.database, "collection": "aggregations",
                **options}


def mongomock_matcher(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turn the sink's mongomock fast path off for one test: mongomock's own lookup and matcher."""
    from mongomock_ng import collection

    from streamkit_mongodb import mongomock_fast
    monkeypatch.setattr(mongomock_fast, "enabled", False)  # the sink's own collection too
    streamkit_mongodb.speed_up_mongomock()  # in place (tests/conftest.py opts every test in)
    fast = collection.Collection._iter_documents
    monkeypatch.setattr(collection.Collection, "_iter_documents", fast.__wrapped__)
    assert not hasattr(collection.Collection._iter_documents, "__wrapped__"), "the fast path is still on"


@pytest.fixture(params=["fast", "mongomock", pytest.param("server", marks=pytest.mark.integration)])
def store(request, monkeypatch):
    kind = request.param
    if kind != "server":
        if kind == "mongomock":
            mongomock_matcher(monkeypatch)
        uri = f"mongomock://{kind}-{uuid.uuid4().hex}"
        yield Store(kind, uri, "db", streamkit_mongodb.connect(uri))
        return
    uri = request.getfixturevalue("mongo_uri")  # skips, or fails under STREAMKIT_REQUIRE_SERVERS=1
    from pymongo import MongoClient
    client = MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=10000)
    database = f"eo_{uuid.uuid4().hex[:10]}"
    try:
        yield Store(kind, uri, database, client)
    finally:
        client.drop_database(database)
        client.close()
