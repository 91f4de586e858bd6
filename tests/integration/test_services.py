"""The command-line contract of scripts/services, on a MongoDB-wire server of the test's own (state
folder under tmp_path, a free port): `up` is idempotent and prints the export lines, `status`,
`stop-mongo` / `start-mongo` keep the data, `down` in a later invocation stops exactly what `up`
started, and a port already taken fails the start. Kafka is left to the shared broker
(KAFKA_BOOTSTRAP set: the script starts none); its start and stop are what ``private_kafka`` does.
"""
from __future__ import annotations

import os
import socket
import subprocess

import pytest

from servers import SERVICES, free_port


def services(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SERVICES), *args], env=env, capture_output=True, text=True, timeout=180)


@pytest.fixture
def env(kafka_bootstrap, secantus, tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MONGO_URI"}
    env.update({"KAFKA_BOOTSTRAP": kafka_bootstrap, "STREAMKIT_MONGO_PORT": str(port),
                "STREAMKIT_SERVICES_DIR": str(tmp_path / "services")})
    try:
        yield env
    finally:
        services(env, "down")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_up_status_stop_start_down(env, tmp_path):
    from pymongo import MongoClient
    port = int(env["STREAMKIT_MONGO_PORT"])
    uri = f"mongodb://127.0.0.1:{port}"
    expected = f"export KAFKA_BOOTSTRAP={env['KAFKA_BOOTSTRAP']}\nexport MONGO_URI={uri}\n"

    up = services(env, "up")
    assert (up.returncode, up.stdout) == (0, expected), up.stderr
    status = services(env, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    pid_line = [ln for ln in status.stdout.splitlines() if ln.startswith("mongo: running, pid ")]
    assert pid_line, status.stdout

    again = services(env, "up")  # idempotent: the same server, nothing new started
    assert (again.returncode, again.stdout) == (0, expected), again.stderr
    assert "mongo already running" in again.stderr
    assert pid_line[0] in services(env, "status").stdout

    with MongoClient(uri, serverSelectionTimeoutMS=10000) as client:
        client.kept.c.insert_one({"_id": 1})
    stop = services(env, "stop-mongo")
    assert stop.returncode == 0, stop.stderr
    assert not _listening(port)
    status = services(env, "status")
    assert status.returncode == 3 and "mongo: stopped (data kept in" in status.stdout, status.stdout

    start = services(env, "start-mongo")
    assert (start.returncode, start.stdout) == (0, f"export MONGO_URI={uri}\n"), start.stderr
    with MongoClient(uri, serverSelectionTimeoutMS=10000) as client:
        assert client.kept.c.count_documents({}) == 1

    assert services(env, "stop-mongo", "--kill").returncode == 0
    assert not _listening(port)
    assert services(env, "start-mongo").returncode == 0
    assert _listening(port)

    down = services(env, "down")
    assert down.returncode == 0, down.stderr
    assert not _listening(port)
    assert not (tmp_path / "services").exists()


def test_a_taken_port_fails_the_start(env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(env["STREAMKIT_MONGO_PORT"])))
        taken.listen()
        up = services(env, "up")
    assert up.returncode == 1, up.stdout + up.stderr
    assert up.stdout == ""
    assert f"port 127.0.0.1:{env['STREAMKIT_MONGO_PORT']} is already in use" in up.stderr
    assert "mongo: not started" in services(env, "status").stdout
