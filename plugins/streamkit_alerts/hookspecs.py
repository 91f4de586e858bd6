"""The hook this plugin adds, and the base class of the types registered through it.

Another plugin contributes a destination with::

    from streamkit import hookimpl
    from streamkit_alerts import AlertDestination

    class Pager(AlertDestination):
        options = {"who": Option(str, "on-call", "who to page")}

        def send(self, alerts: list[dict]) -> None: ...

    @hookimpl
    def register_alert_destinations(register):
        register("pager", Pager)
"""
from __future__ import annotations

from typing import Callable

from streamkit import PluginType, hookspec


class AlertDestination(PluginType):
    """Receives fired alerts: JSON-ready dicts with at least ``rule``, ``aggregation``,
    ``key``, ``window`` (``start``/``end``: ISO-8601 or None), ``field``, ``value``,
    ``threshold``, ``op`` and ``message``. ``send`` may block on the network, so the
    alerts plugin calls it off the pipeline's writer thread."""

    def open(self) -> None:
        pass

    def send(self, alerts: list[dict]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


@hookspec
def register_alert_destinations(register: Callable[[str, type], None]) -> None:
    """Register alert destination types: ``register("webhook", WebhookAlerts)``.

    Classes derive from :class:`streamkit_alerts.AlertDestination`. The alerts plugin
    hands each fired alert to the destinations a pipeline names.
    """
