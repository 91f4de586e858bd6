"""Use streamkit as a library: build a pipeline in code, run it, read the aggregates.

    python examples/library_use.py
"""
from streamkit import Pipeline
from streamkit_mongodb import connect

pipeline = Pipeline.from_dict({
    "source": {"type": "generator", "seed": 1, "users": 100, "items": 20, "rate": 0},
    "aggregations": [
        {"name": "interactions_per_user", "type": "count", "group_by": ["user_id"]},
        {"name": "duration_per_item", "type": "avg", "field": "duration_ms", "group_by": ["item_id"]},
    ],
    "sinks": [{"type": "mongodb", "uri": "mongomock://example", "database": "demo"}],
})
result = pipeline.run(max_events=50_000)
print(result)  # 50,000 records read, 50,000 aggregated, 0 dead letters, ...

docs = connect("mongomock://example").demo.aggregations
for doc in docs.find({"aggregation": "interactions_per_user"}).sort("count", -1).limit(3):
    print(doc["key"]["user_id"], doc["count"])
