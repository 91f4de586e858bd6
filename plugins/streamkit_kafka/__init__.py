"""Kafka for streamkit: the ``kafka`` source, the ``kafka`` sink and the ``kafka`` dead-letter
destination, on kafka-python or on confluent-kafka (librdkafka) (``client:``).

    source:      {type: kafka, bootstrap_servers: 127.0.0.1:9092, topic: user_interactions}
    sinks:       [{type: kafka, topic: user_interactions, what: records}]
    dead_letter: {type: kafka}          # <topic>.dlq, brokers taken from the kafka source

Modules: ``source`` (consumer group, manual commits, rebalances), ``sink`` and
``dead_letters`` (both through ``producer``, which waits for acknowledgements),
``client`` (shared connection options, the choice of client library, errors), and one
module per client library, imported only when chosen: ``kafka_python`` and ``librdkafka``.
"""
from __future__ import annotations

from streamkit import hookimpl

from .dead_letters import KafkaDeadLetters
from .sink import KafkaSink
from .source import KafkaSource

__all__ = ["KafkaSource", "KafkaSink", "KafkaDeadLetters"]


@hookimpl
def register_sources(register) -> None:
    register("kafka", KafkaSource)


@hookimpl
def register_sinks(register) -> None:
    register("kafka", KafkaSink)


@hookimpl
def register_dead_letters(register) -> None:
    register("kafka", KafkaDeadLetters)
