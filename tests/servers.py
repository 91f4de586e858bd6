"""Servers of a test's own: a MongoDB-wire server (SecantusDB) and a Kafka broker, each started by
``scripts/services`` (the one launcher of both) on free ports with a state folder of its own, so a
test can stop and start it without disturbing the tests that use the shared servers. The fixtures
that hand them out (``mongo_server``, ``private_mongo``, ``private_kafka``) are in
tests/integration/conftest.py.
"""
from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[1] / "scripts" / "services"


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateServer:
    """One service of ``scripts/services`` (``kafka`` or ``mongo``) in the state folder ``folder``."""

    service = ""

    def __init__(self, folder: str) -> None:
        self.port = free_port()
        # unset: the script starts its own server rather than taking the shared one's address
        self.env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP", "MONGO_URI")}
        self.env.update({"STREAMKIT_SERVICES_DIR": folder, "STREAMKIT_KAFKA_PORT": str(self.port),
                         "STREAMKIT_KAFKA_CONTROLLER_PORT": str(free_port()),
                         "STREAMKIT_MONGO_PORT": str(self.port)})

    def services(self, *args: str) -> None:
        done = subprocess.run([str(SERVICES), *args], env=self.env, capture_output=True, text=True,
                              timeout=180)
        if done.returncode != 0:
            raise RuntimeError(f"scripts/services {' '.join(args)} failed (exit {done.returncode}):\n{done.stderr}")

    def start(self) -> None:
        """Start it (again, on the data it kept) and wait until it answers."""
        self.services(f"start-{self.service}")

    def stop(self, kill: bool = False) -> None:
        """Stop it, keeping its data: SIGTERM, or SIGKILL at once with ``kill``."""
        self.services(f"stop-{self.service}", *(["--kill"] if kill else []))

    def close(self) -> None:
        """Stop it and delete its data."""
        self.services("down")


class PrivateMongo(PrivateServer):
    service = "mongo"

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def client(self):
        from pymongo import MongoClient
        return MongoClient(self.uri, tz_aware=True, serverSelectionTimeoutMS=10000)


class PrivateKafka(PrivateServer):
    service = "kafka"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"
