"""A test source over fixed records: a batch of each partition per poll; keeps what it committed."""
from streamkit import Batch, Option, Source


class ListSource(Source):
    """Test source: yields the given records (raw bytes or dicts) in batches, per partition."""

    options = {"partitions": Option(dict, help="partition -> list of records"),
               "batch": Option(int, 100), "decoded": Option(bool, False),
               "end": Option(bool, True, "finish after the last record (else: wait for more, for ever)")}

    def open(self, hooks):
        self.parts = {p: list(recs) for p, recs in self.config["partitions"].items()}
        resume = hooks.assigned(sorted(self.parts)) or {}
        self.pos = {p: resume.get(p, 0) for p in self.parts}
        self.committed = {}

    def poll(self, timeout):
        out = []
        for p, recs in self.parts.items():
            i = self.pos[p]
            if i < len(recs):
                n = min(self.config["batch"], len(recs) - i)
                out.append(Batch(p, recs[i:i + n], i, i + n, decoded=self.config["decoded"]))
                self.pos[p] = i + n
        return out or (None if self.config["end"] else [])

    def commit(self, positions):
        self.committed.update(positions)
