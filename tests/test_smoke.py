from streamkit import Pipeline


def test_default_pipeline_runs(root):
    p = Pipeline.from_yaml(f"{root}/pipeline.yaml", overrides=["source.rate=0", "sinks.1.every=0", "dashboard.port=0"])
    r = p.run(max_events=5000)
    assert r.records_read == 5000 and r.flushes >= 1
