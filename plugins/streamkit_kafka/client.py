"""What the Kafka source, sink and dead-letter destination share: connection options, the
choice of client library, partition names, and one-line errors for unreachable brokers.

Two client libraries sit behind the same types and options (``client:``): kafka-python
(:mod:`.kafka_python`, always installed) and confluent-kafka on librdkafka
(:mod:`.librdkafka`, ``pip install 'streamkit[fast]'``). Neither is imported before a
client is built, so listing or validating pipelines pays for neither.
"""
from __future__ import annotations

import importlib.util
import logging
from typing import Any

from streamkit import ConfigError, Duration, ListOf, OneOf, Option, StreamkitError

#: passed on to the client library when set (for SASL/SSL clusters)
SECURITY_OPTIONS = ("security_protocol", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password",
                    "ssl_cafile", "ssl_certfile", "ssl_keyfile")

CLIENTS = ("kafka-python", "confluent-kafka")
#: the module that must be importable for each client, and the module of streamkit that wraps it
_LIBRARY = {"kafka-python": "kafka", "confluent-kafka": "confluent_kafka"}
_BACKEND = {"kafka-python": "kafka_python", "confluent-kafka": "librdkafka"}


def connection_options(bootstrap_default: Any = "127.0.0.1:9092") -> dict[str, Option]:
    """The options every Kafka client type takes (``bootstrap_default=None``: inherit them)."""
    inherit = bootstrap_default is None
    return {
        "bootstrap_servers": Option(ListOf(str), bootstrap_default,
                                    "host:port of one or more brokers (a string or a list)"),
        "client": Option(OneOf("auto", *CLIENTS), None if inherit else "auto",
                         "client library: confluent-kafka (librdkafka) when installed, else kafka-python "
                         "(auto), or either by name" + (" (default: the kafka source's)" if inherit else "")),
        "connect_timeout": Option(Duration, None if inherit else 30.0,
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


class CommitFailed(Exception):
    """A client could not commit offsets (a rebalance, a broker away); the source retries."""


def installed(client: str) -> bool:
    return importlib.util.find_spec(_LIBRARY[client]) is not None


def chosen(options: dict, context: Any = None) -> str:
    """The client library ``options`` name: ``auto`` (or unset) is confluent-kafka when it is
    installed, else kafka-python. Naming one that is not installed is a one-line error."""
    client = options.get("client") or "auto"
    if client == "auto":
        return "confluent-kafka" if installed("confluent-kafka") else "kafka-python"
    if not installed(client):
        hint = "pip install 'streamkit[fast]'" if client == "confluent-kafka" else f"pip install {client}"
        raise ConfigError(f"{client} is not installed ({hint}); or use client: auto",
                          file=getattr(context, "file", None), key=f"{getattr(context, 'name', 'kafka')}.client")
    return client


def backend(options: dict, context: Any = None) -> Any:
    """The module wrapping the chosen client library (imported only now)."""
    return importlib.import_module(f"{__package__}.{_BACKEND[chosen(options, context)]}")


def group_settings(c: dict) -> dict[str, Any]:
    """The consumer-group settings a source sets, in kafka-python's names (librdkafka's are the
    same with dots); unset ones keep the client's defaults."""
    out: dict[str, Any] = {}
    if c["session_timeout"] is not None:
        ms = int(c["session_timeout"] * 1000)
        out["session_timeout_ms"] = ms
        out["heartbeat_interval_ms"] = max(100, min(3000, ms // 3))  # must stay below a third
    if c["group_instance_id"] is not None:
        out["group_instance_id"] = c["group_instance_id"]
    if c["reconnect_backoff_max"] is not None:
        out["reconnect_backoff_max_ms"] = max(1, int(c["reconnect_backoff_max"] * 1000))
    return out


def servers(value: list[str]) -> list[str]:
    """``["a:9092,b:9092"]`` and ``["a:9092", "b:9092"]`` both name two brokers."""
    return [s.strip() for item in value for s in item.split(",") if s.strip()]


def partition_name(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


def split_partition(name: str) -> tuple[str, int | None]:
    """``"user_interactions/3"`` -> ``("user_interactions", 3)``; a name without a number keeps None."""
    topic, sep, number = name.rpartition("/")
    if sep and number.isdigit():
        return topic, int(number)
    return name, None


def quiet_kafka_logging() -> None:
    """Both libraries log every failed connection attempt at WARNING/ERROR; streamkit reports
    unreachable brokers itself, in one line, so their chatter is shown only with ``-v``."""
    root = logging.getLogger()
    for name in ("kafka", "librdkafka"):
        lg = logging.getLogger(name)
        if lg.level == logging.NOTSET and root.getEffectiveLevel() >= logging.WARNING:
            lg.setLevel(logging.CRITICAL)


def unreachable(what: str, options: dict, exc: BaseException | str) -> str:
    """One plain sentence naming the brokers, the timeout and the client's reason."""
    if isinstance(exc, BaseException):
        kind = type(exc).__name__
        detail = (str(exc).strip() or kind).splitlines()[0]
        if not detail.startswith(kind):
            detail = f"{kind}: {detail}"
    else:
        detail = exc
    return (f"{what}: no Kafka broker reachable at {','.join(servers(options['bootstrap_servers']))} "
            f"within {options['connect_timeout']:g}s ({detail})")
