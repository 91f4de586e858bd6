"""The final status document on the real MongoDB-wire server (SecantusDB at MONGO_URI).

The mongodb sink closes its client when the run ends; the dashboard writes the final
status after that, so it must not depend on the sink's client.
"""
from __future__ import annotations

import logging
import os
import uuid

import pytest
from pymongo import MongoClient

from streamkit import Pipeline
from streamkit_dashboard.status import STATUS_COLLECTION

from test_dashboard import config, make_records

pytestmark = [pytest.mark.integration]


@pytest.fixture
def database(mongo_uri):
    uri = mongo_uri
    name = f"dash_{uuid.uuid4().hex[:10]}"
    client = MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=5000)
    yield uri, client, name
    client.drop_database(name)
    client.close()


def test_final_status_is_written_after_the_sink_closed_its_client(database, monkeypatch, caplog):
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(__file__), "browser"))
    uri, client, dbname = database
    cfg = config(make_records(), uri)
    cfg["sinks"][0]["database"] = dbname
    with caplog.at_level(logging.WARNING, logger="streamkit.dashboard"):
        result = Pipeline.from_dict(cfg).run()
    assert result.records_read == 540
    assert [r.getMessage() for r in caplog.records] == []
    [doc] = client[dbname][STATUS_COLLECTION].find({"kind": "process"})
    assert doc["state"] == "stopped"
    assert doc["stopped_by"] == "source_finished"
    assert doc["records_read"] == 540 and doc["records_aggregated"] == 540
