"""A 64-bit hash of a value that is the same in every process, on every machine and in every
Python version (unlike ``hash()``, salted per process): what sketches key their state by, so a
sketch stored by one process merges with another's."""
from __future__ import annotations

from hashlib import blake2b
from typing import Any

__all__ = ["stable_hash"]


def stable_hash(value: Any) -> int:
    """The 64-bit BLAKE2b hash of a value as a table key (see ``tag_key``): a string, an integer, a
    tagged float or boolean. ``"1"``, ``1``, ``1.0`` and ``true`` hash differently, as they group
    differently."""
    t = type(value)
    if t is str:
        data = b"s" + value.encode("utf-8", "surrogatepass")
    elif t is int:
        data = b"i" + str(value).encode()
    elif t is tuple and len(value) == 2 and value[0] in ("float", "bool"):
        data = (b"f" + repr(float(value[1])).encode()) if value[0] == "float" else (b"b1" if value[1] else b"b0")
    elif t is float:
        data = b"f" + repr(value + 0.0).encode()
    elif t is bool:
        data = b"b1" if value else b"b0"
    else:
        raise TypeError(f"cannot hash a {t.__name__}; expected a string, integer, float or boolean")
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "big")
