import math
import uuid

from streamkit import Pipeline
from streamkit_mongodb import connect


def test_default_pipeline_runs(root):
    n, size = 5000, 1000  # the generator's batches are 1,000 records: each flush is one batch
    uri = f"mongomock://smoke-{uuid.uuid4().hex}"
    p = Pipeline.from_yaml(f"{root}/pipeline.yaml", overrides=[
        "source.rate=0", "sinks.1.every=0", "dashboard.port=0", f"sinks.0.uri={uri}",
        "flush.interval=1h", f"flush.max_records={size}"])
    r = p.run(max_events=n)
    assert (r.records_read, r.records_aggregated, r.dead_letters) == (n, n, 0)
    assert r.flushes == math.ceil(n / size)
    docs = connect(uri)["interaction_db"]["aggregations"].find({"aggregation": "interactions_per_type"})
    assert sum(d["count"] for d in docs) == n
