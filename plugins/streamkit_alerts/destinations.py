"""Built-in alert destinations: ``log``, ``webhook`` (HTTP POST of JSON) and ``kafka`` (a topic)."""
from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

from streamkit import Duration, ListOf, OneOf, Option

from .hookspecs import AlertDestination

log = logging.getLogger("streamkit.alerts")


class LogAlerts(AlertDestination):
    """Writes each alert as one log line (logger streamkit.alerts)."""

    options = {"level": Option(OneOf("warning", "error", "info"), "warning", "log level of alert lines")}

    def send(self, alerts: list[dict]) -> None:
        level = logging.getLevelName(self.config["level"].upper())
        for a in alerts:
            log.log(level, "alert %s: %s", a["rule"], a["message"])


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
    return url


def _check_headers(headers: dict) -> dict:
    for k, v in headers.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ValueError(f"expected header names and values as strings, got {k!r}: {v!r}")
    return headers


class WebhookAlerts(AlertDestination):
    """POSTs each alert as a JSON object to a URL."""

    options = {
        "url": Option(str, help="http:// or https:// URL to POST to", check=_check_url),
        "timeout": Option(Duration, 5.0, "seconds to wait for the server per attempt"),
        "retries": Option(int, 2, "further attempts after a failed POST", min=0, max=10),
        "headers": Option(dict, {}, "extra request headers, e.g. Authorization", check=_check_headers),
    }

    def send(self, alerts: list[dict]) -> None:
        for a in alerts:
            self._post(a)

    def _post(self, alert: dict) -> None:
        import urllib.error
        import urllib.request  # on first use: http.client and ssl cost every command's start-up
        c = self.config
        body = json.dumps(alert, default=str).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "streamkit-alerts", **c["headers"]}
        delay = 0.5
        for attempt in range(c["retries"] + 1):
            req = urllib.request.Request(c["url"], data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=c["timeout"]) as resp:
                    resp.read()
                return
            except (urllib.error.URLError, OSError) as exc:
                error = exc
            if attempt < c["retries"]:
                time.sleep(delay)
                delay *= 2
        log.error("alerts: %s: POST to %s failed after %d attempts: %s; alert %s not delivered there",
                  self.context.name, c["url"], c["retries"] + 1, error, alert["id"])


class KafkaAlerts(AlertDestination):
    """Produces each alert as a JSON message (key: the alert id) to a Kafka topic."""

    options = {
        "topic": Option(str, help="topic to produce to"),
        "bootstrap_servers": Option(ListOf(str), "127.0.0.1:9092", "host:port of one or more brokers"),
        "timeout": Option(Duration, 10.0, "seconds to wait for the brokers to acknowledge"),
    }

    def open(self) -> None:
        from kafka import KafkaProducer

        c = self.config
        self.producer: Any = KafkaProducer(
            bootstrap_servers=c["bootstrap_servers"], acks="all",
            request_timeout_ms=int(c["timeout"] * 1000), max_block_ms=int(c["timeout"] * 1000))

    def send(self, alerts: list[dict]) -> None:
        futures = [self.producer.send(self.config["topic"], key=a["id"].encode(),
                                      value=json.dumps(a, default=str).encode()) for a in alerts]
        self.producer.flush(timeout=self.config["timeout"])
        failed = [f for f in futures if f.failed()]
        if failed:
            log.error("alerts: %s: %d alerts not acknowledged by Kafka: %s", self.context.name, len(failed),
                      failed[0].exception)

    def close(self) -> None:
        producer = getattr(self, "producer", None)
        if producer is not None:
            producer.close(timeout=self.config["timeout"])
