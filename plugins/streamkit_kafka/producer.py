"""A producer that makes a set of messages durable before returning, on the chosen client.

Both the ``kafka`` sink and the ``kafka`` dead-letter destination send a flush's
messages, then wait until the broker acknowledged every one (``acks=all``): the
engine commits source positions only after ``write`` returns, so nothing may
still sit in a client buffer by then.
"""
from __future__ import annotations

from typing import Any

from .client import backend


def DurableProducer(what: str, options: dict, *, delivery_timeout: float, linger_ms: int = 5,  # noqa: N802
                    batch_size: int | None = None, compression: str | None = None, context: Any = None) -> Any:
    """A ``Producer`` of the client ``options`` choose: ``send(topic, value, key=, headers=)``
    returns a handle, ``wait(handles)`` returns once all of them were acknowledged (or raises
    :class:`~.client.KafkaUnavailable` naming the first failure), ``close()`` sends the rest.
    ``delivery_timeout``: seconds a message may take to be acknowledged."""
    return backend(options, context).Producer(what, options, delivery_timeout=delivery_timeout,
                                              linger_ms=linger_ms, batch_size=batch_size, compression=compression)


class Producing:
    """For a type that produces each write's messages through ``self.producer`` (a
    :func:`DurableProducer` made in ``open``): ``close`` sends what is left and closes it."""

    producer: Any = None

    def close(self) -> None:
        if self.producer is not None:
            self.producer.close()
