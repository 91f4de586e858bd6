"""What the Kafka source, sink and dead-letter destination share: connection options,
partition names, and turning kafka-python's connection failures into one-line errors.

kafka-python is imported only when a client is built, so listing or validating
pipelines does not pay for it.
"""
from __future__ import annotations

import logging
from typing import Any

from streamkit import Duration, ListOf, OneOf, Option, StreamkitError

#: passed to kafka-python unchanged when set (for SASL/SSL clusters)
SECURITY_OPTIONS = ("security_protocol", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password",
                    "ssl_cafile", "ssl_certfile", "ssl_keyfile")


def connection_options(bootstrap_default: Any = "127.0.0.1:9092") -> dict[str, Option]:
    """The options every Kafka client type takes (``bootstrap_default=None``: inherit them)."""
    return {
        "bootstrap_servers": Option(ListOf(str), bootstrap_default,
                                    "host:port of one or more brokers (a string or a list)"),
        "connect_timeout": Option(Duration, 30.0 if bootstrap_default is not None else None,
                                  "give up with an error if no broker answers within this time"),
        "security_protocol": Option(OneOf("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"), None,
                                    "PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL"),
        "sasl_mechanism": Option(str, None, "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER"),
        "sasl_plain_username": Option(str, None, "SASL user name"),
        "sasl_plain_password": Option(str, None, "SASL password"),
        "ssl_cafile": Option(str, None, "CA certificate file (PEM)"),
        "ssl_certfile": Option(str, None, "client certificate file (PEM)"),
        "ssl_keyfile": Option(str, None, "client private key file (PEM)"),
    }


class KafkaUnavailable(StreamkitError):
    """A Kafka broker could not be reached, or refused what was sent."""

    exit_code = 1


def servers(value: list[str]) -> list[str]:
    """``["a:9092,b:9092"]`` and ``["a:9092", "b:9092"]`` both name two brokers."""
    return [s.strip() for item in value for s in item.split(",") if s.strip()]


def client_config(options: dict) -> dict:
    """kafka-python keyword arguments for the connection options that are set."""
    cfg: dict[str, Any] = {"bootstrap_servers": servers(options["bootstrap_servers"]),
                           "bootstrap_timeout_ms": int(options["connect_timeout"] * 1000)}
    for key in SECURITY_OPTIONS:
        if options.get(key) is not None:
            cfg[key] = options[key]
    return cfg


def construct(cls: Any, **config: Any) -> Any:
    """``cls(**config)`` for a kafka-python client; if it fails (no broker within the timeout),
    its network client is closed too: otherwise its IO thread would outlive the failed call."""
    made: list = []
    base = cls.DEFAULT_CONFIG["kafka_client"]

    def factory(**kwargs: Any) -> Any:
        client = base(**kwargs)
        made.append(client)
        return client

    try:
        return cls(kafka_client=factory, **config)
    except BaseException:
        for client in made:
            try:
                client.close()
            except Exception:  # already failing; the first error is the one to report
                pass
        raise


def partition_name(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


def split_partition(name: str) -> tuple[str, int | None]:
    """``"user_interactions/3"`` -> ``("user_interactions", 3)``; a name without a number keeps None."""
    topic, sep, number = name.rpartition("/")
    if sep and number.isdigit():
        return topic, int(number)
    return name, None


def quiet_kafka_logging() -> None:
    """kafka-python logs every failed connection attempt at WARNING/ERROR; streamkit reports
    unreachable brokers itself, in one line, so its chatter is shown only with ``-v``."""
    root = logging.getLogger()
    lg = logging.getLogger("kafka")
    if lg.level == logging.NOTSET and root.getEffectiveLevel() >= logging.WARNING:
        lg.setLevel(logging.CRITICAL)


def unreachable(what: str, options: dict, exc: BaseException) -> str:
    """One plain sentence naming the brokers, the timeout and kafka-python's reason."""
    kind = type(exc).__name__
    detail = (str(exc).strip() or kind).splitlines()[0]
    if not detail.startswith(kind):
        detail = f"{kind}: {detail}"
    return (f"{what}: no Kafka broker reachable at {','.join(servers(options['bootstrap_servers']))} "
            f"within {options['connect_timeout']:g}s ({detail})")
