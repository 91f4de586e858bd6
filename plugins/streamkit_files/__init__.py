"""Files and standard input for streamkit: the ``file`` and ``stdin`` sources.

    source: {type: file, path: "data/*.jsonl.gz"}             # read to the end, then stop
    source: {type: file, path: /var/log/app/events.log, follow: true}   # tail -F
    source: {type: stdin}                                      # producer | streamkit run p.yaml

Both hand the engine raw lines, which it decodes, validates and turns into dead letters as it
does Kafka records. Modules: ``lines`` (bytes to records with their positions), ``file``
(partitions per file, rotation), ``stdin``.
"""
from __future__ import annotations

from streamkit import hookimpl


@hookimpl
def register_sources(register) -> None:
    from .file import FileSource
    from .stdin import StdinSource

    register("file", FileSource)
    register("stdin", StdinSource)
