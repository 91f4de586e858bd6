#!/usr/bin/env python3
"""Start, stop and inspect the local test services of streamkit, without Docker.

    scripts/services up            # start Kafka + SecantusDB, print `export ...` lines
    scripts/services status        # what runs, with pids and addresses (exit 0 all up, 3 otherwise)
    scripts/services down          # stop what `up` started and delete its data
    scripts/services stop-kafka    # stop only Kafka, keep its data   (--kill: SIGKILL at once)
    scripts/services start-kafka   # start it again on the same data
    scripts/services stop-mongo    # same for the MongoDB-wire server
    scripts/services start-mongo

Typical use:  eval "$(scripts/services up)"  ...  scripts/services down

* Kafka: Apache Kafka (version from scripts/kafka/pom.xml) in KRaft mode, one combined
  broker+controller node on 127.0.0.1:$STREAMKIT_KAFKA_PORT (default 9092), controller
  listener on $STREAMKIT_KAFKA_CONTROLLER_PORT (default Kafka port + 1). Its jars come from
  Maven Central through `mvn dependency:copy-dependencies` into
  ${STREAMKIT_CACHE:-~/.cache/streamkit}/kafka-<version>/libs, fetched once and reused.
* MongoDB: SecantusDB (`python -m secantus`) on 127.0.0.1:$STREAMKIT_MONGO_PORT (default 27017).
* If KAFKA_BOOTSTRAP (or MONGO_URI) is already set to some other server, that service is
  not started; its export line is printed unchanged.
* State (pid, ports, data, logs) lives in $STREAMKIT_SERVICES_DIR (default <repo>/.services), so
  that `down` in another shell stops exactly what `up` started. The servers outlive this script,
  which is why it keeps its own state rather than a library's in-process handle (mirakuru and
  the like stop what they started when the Python that started it exits); psutil finds, signals
  and waits for the processes.

Only the `export` lines go to stdout; progress and errors go to stderr.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable
from xml.sax.saxutils import quoteattr

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
POM = HERE / "kafka" / "pom.xml"
HOST = "127.0.0.1"
RUN_DIR = Path(os.environ.get("STREAMKIT_SERVICES_DIR") or (REPO / ".services")).expanduser().absolute()
CACHE_DIR = Path(os.environ.get("STREAMKIT_CACHE") or "~/.cache/streamkit").expanduser().absolute()


class Fail(Exception):
    """A one-line reason to stop with exit code 1."""


def log(msg: str) -> None:
    with contextlib.suppress(OSError):  # stderr closed (e.g. piped into `head`): keep going
        print(f"services: {msg}", file=sys.stderr, flush=True)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise Fail(f"{name}={raw!r} is not a number") from None


def need(module: str, package: str):
    try:
        return __import__(module)
    except ImportError:
        raise Fail(f"{package} is not installed in {sys.executable} (pip install -e '.[test]')") from None


def kafka_version() -> str:
    m = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", POM.read_text())
    if not m:
        raise Fail(f"no <kafka.version> property in {POM}")
    return m.group(1)


def tail(path: Path, n: int = 30) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"  ({path} does not exist)"
    return "\n".join("  | " + ln for ln in lines[-n:]) or f"  ({path} is empty)"


# --------------------------------------------------------------------------- ports

def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def port_owner(port: int) -> str:
    psutil = need("psutil", "psutil")
    with contextlib.suppress(psutil.Error, OSError):
        for c in psutil.net_connections("tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port and c.pid:
                return f" by {psutil.Process(c.pid).name()} (pid {c.pid})"
    return ""


# --------------------------------------------------------------------------- one service

class Service:
    """A server started by this script: its state file, its process, start, stop and readiness.
    Subclasses say how to start it (``command``) and how to ask it whether it is ready (``probe``)."""

    name = ""
    env_var = ""
    out_name = ""  # its stdout and stderr
    log_name = ""  # where it logs (may be the same file)

    def __init__(self, port: int, ready_timeout: int, stop_timeout: int) -> None:
        self.dir = RUN_DIR / self.name
        self.state_file = self.dir / "state.json"
        self.wanted_port = port
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout

    # -- state: {"pid", "created", "port", ...}
    def state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def save(self, st: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(st, indent=1))
        tmp.replace(self.state_file)

    def port(self) -> int:
        return self.state().get("port") or self.wanted_port

    def data_dir(self) -> Path:
        return self.dir / "data"

    def marker(self) -> str:
        """A string in the server's command line: a recycled pid does not pass for the server."""
        return str(self.data_dir())

    def process(self):
        """The running server (a psutil.Process), or None."""
        psutil = need("psutil", "psutil")
        st = self.state()
        if not st.get("pid"):
            return None
        try:
            proc = psutil.Process(st["pid"])
            if proc.status() == psutil.STATUS_ZOMBIE or self.marker() not in " ".join(proc.cmdline()):
                return None
            if st.get("created") and abs(proc.create_time() - st["created"]) > 1:
                return None
            return proc
        except psutil.Error:
            return None

    def address(self, port: int | None = None) -> str:
        raise NotImplementedError

    def export_line(self, value: str) -> str:
        return f"export {self.env_var}={value}"

    def external(self) -> str | None:
        """The value of env_var if it names a server this script does not manage."""
        val = os.environ.get(self.env_var)
        if not val:
            return None
        if normalize(val) == normalize(self.address()):
            # Most likely our own export from an earlier `up` (e.g. `up` again after `down`
            # in a shell that eval'ed it). Manage it, unless someone else serves that port.
            if self.process() or port_free(self.port()):
                return None
        return val

    # -- commands
    def start(self) -> str:
        ext = self.external()
        if ext:
            log(f"{self.env_var} is set ({ext}): not starting {self.name}")
            return self.export_line(ext)
        proc = self.process()
        if proc:
            self.wait_ready(None)
            log(f"{self.name} already running (pid {proc.pid}) at {self.address()}")
            return self.export_line(self.address())
        st = self.state()
        port = st.get("port") or self.wanted_port
        if st and port != self.wanted_port:
            log(f"{self.name}: reusing the port of its kept data folder ({port}); `down` first to change it")
        self.dir.mkdir(parents=True, exist_ok=True)
        cmd = self.command(st, port)  # may fail (ports, missing tools) before anything starts
        with open(self.dir / self.out_name, "ab") as f:
            f.write(f"\n=== start {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n".encode())
            # stdin/stdout/stderr never stay attached to ours: `eval "$(services up)"` waits for
            # every holder of the pipe to close it.
            t0 = time.monotonic()
            popen = subprocess.Popen(cmd, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=f,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        psutil = need("psutil", "psutil")
        with contextlib.suppress(psutil.Error):
            st["created"] = psutil.Process(popen.pid).create_time()
        self.save({**st, "pid": popen.pid, "port": port, "started": time.time()})
        log(f"{self.name}: started pid {popen.pid}, waiting for {self.address(port)}")
        try:
            self.wait_ready(popen)
        except Fail:
            self.stop(kill_now=True)
            raise
        log(f"{self.name}: ready at {self.address(port)} after {time.monotonic() - t0:.1f}s")
        return self.export_line(self.address())

    def stop(self, kill_now: bool = False) -> None:
        """SIGTERM the server's process group, SIGKILL what is left after the stop timeout."""
        psutil = need("psutil", "psutil")
        proc = self.process()
        if proc:
            procs = [proc]
            with contextlib.suppress(psutil.Error):
                procs += proc.children(recursive=True)
            for sig in [signal.SIGKILL] if kill_now else [signal.SIGTERM, signal.SIGKILL]:
                log(f"stopping {self.name} (pid {proc.pid}) with {sig.name}")
                try:
                    os.killpg(proc.pid, sig)  # its group: started with start_new_session
                except ProcessLookupError:
                    pass
                except PermissionError:
                    for p in procs:
                        with contextlib.suppress(psutil.Error):
                            p.send_signal(sig)
                timeout = self.stop_timeout if sig == signal.SIGTERM else 10
                _, procs = psutil.wait_procs(procs, timeout=timeout)
                if not procs:
                    break
                if sig == signal.SIGTERM:
                    log(f"{self.name} still running {timeout}s after SIGTERM")
            if procs:
                raise Fail(f"could not stop {self.name} (pids {[p.pid for p in procs]})")
        st = self.state()
        if st:
            self.save({**st, "pid": None})

    def remove(self) -> None:
        self.stop()
        if self.dir.exists():
            shutil.rmtree(self.dir)
            log(f"removed {self.dir}")

    def status(self) -> tuple[bool, str]:
        ext = self.external()
        if ext:
            m = re.search(r"(?:^|//|,)([^:/,@]+):(\d+)", ext)
            ok = bool(m) and port_open(m.group(1), int(m.group(2)))
            return ok, f"{self.name}: external {self.env_var}={ext} ({'reachable' if ok else 'NOT reachable'})"
        proc = self.process()
        if proc:
            ok = port_open(HOST, self.port())
            return ok, (f"{self.name}: running, pid {proc.pid}, {self.address()}"
                        + ("" if ok else " (port not accepting connections yet)")
                        + f", data {self.data_dir()}")
        if self.state():
            return False, f"{self.name}: stopped (data kept in {self.data_dir()})"
        return False, f"{self.name}: not started"

    def require_ports(self, ports: list[int], env_hint: str) -> None:
        for p in ports:
            if not port_free(p):
                raise Fail(f"cannot start {self.name}: port {HOST}:{p} is already in use{port_owner(p)}. "
                           f"Stop that process, or pick other ports with {env_hint}, or point "
                           f"the tests at a running server with {self.env_var}.")

    def wait_ready(self, popen: subprocess.Popen | None) -> None:
        """Poll ``probe`` until the server answers; fail at once if it exits, after the timeout
        if it does not answer."""
        deadline = time.monotonic() + self.ready_timeout
        logfile = self.dir / self.log_name
        while True:
            if popen is not None and popen.poll() is not None:
                out = self.dir / self.out_name
                raise Fail(f"{self.name} exited with code {popen.returncode} during startup; last lines of "
                           f"{logfile}:\n{tail(logfile)}"
                           + (f"\n{out}:\n{tail(out, 15)}" if out != logfile else ""))
            if popen is None and not self.process():
                raise Fail(f"{self.name} is not running")
            why = self.probe() if port_open(HOST, self.port()) else "port not open yet"
            if why is None:
                return
            if time.monotonic() > deadline:
                raise Fail(f"{self.name} not ready after {self.ready_timeout}s ({why}); last lines of "
                           f"{logfile}:\n{tail(logfile)}")
            time.sleep(0.3)

    def command(self, state: dict, port: int) -> list[str]:
        """The server's command line; prepares its folder (and may update ``state``)."""
        raise NotImplementedError

    def probe(self) -> str | None:
        """None when the server answers a real request, else why not yet."""
        raise NotImplementedError


def normalize(addr: str) -> str:
    return addr.strip().rstrip("/").replace("localhost", HOST)


def probing(what: str, broken: tuple[type, ...], ask: Callable[[], str | None]) -> str | None:
    """Run one readiness request: a failure means "not yet", except one that says the check
    itself is broken (a wrong option, a missing method)."""
    try:
        return ask()
    except broken as e:
        raise Fail(f"{what} readiness check is broken: {type(e).__name__}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any other failure means "not yet"
        return f"{type(e).__name__}: {e}"


# --------------------------------------------------------------------------- Kafka

LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!-- written by scripts/services -->
<Configuration status="warn">
  <Appenders>
    <File name="file" fileName={file} append="true">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="WARN"><AppenderRef ref="file"/></Root>
    <!-- the "Kafka Server started" line -->
    <Logger name="kafka.server.KafkaRaftServer" level="INFO"/>
  </Loggers>
</Configuration>
"""


class Kafka(Service):
    name = "kafka"
    env_var = "KAFKA_BOOTSTRAP"
    out_name = "kafka.out"
    log_name = "kafka.log"

    def __init__(self, port: int, controller_port: int, ready_timeout: int, stop_timeout: int) -> None:
        super().__init__(port, ready_timeout, stop_timeout)
        self.wanted_controller_port = controller_port

    def address(self, port: int | None = None) -> str:
        return f"{HOST}:{port or self.port()}"

    def marker(self) -> str:
        return str(self.dir / "server.properties")

    def ensure_libs(self) -> Path:
        libs = CACHE_DIR / f"kafka-{kafka_version()}" / "libs"
        stamp = libs.parent / "libs.ok"
        want = hashlib.sha256(POM.read_bytes()).hexdigest()
        if libs.is_dir() and stamp.exists() and stamp.read_text().strip() == want:
            return libs
        mvn = shutil.which("mvn")
        if not mvn:
            raise Fail("Maven (`mvn`) is needed once to fetch the Kafka jars (Debian: apt-get install maven)")
        libs.parent.mkdir(parents=True, exist_ok=True)
        tmp = libs.parent / f"libs.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        log(f"fetching Kafka {kafka_version()} jars from Maven Central into {libs} (first run only)")
        t0 = time.monotonic()
        r = subprocess.run([mvn, "-B", "-q", "-Dstyle.color=never", "-f", str(POM), "dependency:copy-dependencies",
                            "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, errors="replace")
        output = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", r.stdout).strip()
        if output:
            print(output, file=sys.stderr, flush=True)
        if r.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
            shutil.rmtree(tmp, ignore_errors=True)
            raise Fail(f"mvn could not fetch the Kafka jars (exit {r.returncode})")
        shutil.rmtree(libs, ignore_errors=True)
        stamp.unlink(missing_ok=True)
        tmp.rename(libs)
        stamp.write_text(want + "\n")
        log(f"fetched {len(list(libs.glob('*.jar')))} jars in {time.monotonic() - t0:.1f}s")
        return libs

    @staticmethod
    def java() -> str:
        jh = os.environ.get("JAVA_HOME")
        if jh and (Path(jh) / "bin" / "java").exists():
            return str(Path(jh) / "bin" / "java")
        j = shutil.which("java")
        if not j:
            raise Fail("`java` (17 or newer) is needed to run Kafka (Debian: apt-get install openjdk-17-jre-headless)")
        return j

    def write_config(self, port: int, cport: int) -> Path:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{cport}",
            "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{cport}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir()),
            # one node: the defaults assume three brokers
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            # fast tests, small footprint
            "group.initial.rebalance.delay.ms": "0",
            "num.partitions": "1",
            "auto.create.topics.enable": "true",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.num.partitions": "1",
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
            "num.network.threads": "2",
            "num.io.threads": "2",
        }
        f = self.dir / "server.properties"
        f.write_text("# written by scripts/services\n" + "".join(f"{k}={v}\n" for k, v in props.items()))
        (self.dir / "log4j2.xml").write_text(LOG4J2_XML.format(file=quoteattr(str(self.dir / self.log_name))))
        return f

    def command(self, state: dict, port: int) -> list[str]:
        cport = state.get("controller_port") or self.wanted_controller_port
        self.require_ports([port, cport], "STREAMKIT_KAFKA_PORT / STREAMKIT_KAFKA_CONTROLLER_PORT")
        java, cp = self.java(), f"{self.ensure_libs()}/*"
        log4j = f"-Dlog4j2.configurationFile={self.dir / 'log4j2.xml'}"
        props = self.write_config(port, cport)
        data = self.data_dir()
        if not (data / "meta.properties").exists():
            shutil.rmtree(data, ignore_errors=True)
            state["cluster_id"] = new_cluster_id()
            log(f"kafka: formatting a new data folder {data}")
            r = subprocess.run([java, "-Xmx256m", log4j, "-cp", cp, "kafka.tools.StorageTool", "format",
                                "-t", state["cluster_id"], "-c", str(props)],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True)
            (self.dir / "format.out").write_text(r.stdout + r.stderr)
            if r.returncode != 0:
                raise Fail(f"kafka storage format failed (exit {r.returncode}):\n{tail(self.dir / 'format.out')}")
        else:
            log(f"kafka: reusing data folder {data}")
        state.update(controller_port=cport, version=kafka_version())
        return [java, "-Xms128m", "-Xmx512m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true", log4j,
                f"-Dkafka.logs.dir={self.dir}", "-cp", cp, "kafka.Kafka", str(props)]

    def probe(self) -> str | None:
        """A real metadata round trip with kafka-python."""
        kafka = need("kafka", "kafka-python")
        import logging
        logging.getLogger("kafka").setLevel(logging.CRITICAL)

        def ask() -> str | None:
            admin = kafka.KafkaAdminClient(bootstrap_servers=self.address(), client_id="streamkit-services",
                                           request_timeout_ms=5000, bootstrap_timeout_ms=5000)
            try:
                return None if admin.describe_cluster().get("brokers") else "no broker in the metadata yet"
            finally:
                with contextlib.suppress(Exception):
                    admin.close()
        return probing("kafka", (kafka.errors.KafkaConfigurationError, TypeError, AttributeError), ask)


def new_cluster_id() -> str:
    # the format of org.apache.kafka.common.Uuid.randomUuid(): url-safe base64, no padding
    while True:
        s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not s.startswith("-"):
            return s


# --------------------------------------------------------------------------- MongoDB (SecantusDB)

class Mongo(Service):
    name = "mongo"
    env_var = "MONGO_URI"
    out_name = log_name = "mongo.log"

    def address(self, port: int | None = None) -> str:
        return f"mongodb://{HOST}:{port or self.port()}"

    def command(self, state: dict, port: int) -> list[str]:
        self.require_ports([port], "STREAMKIT_MONGO_PORT")
        need("secantus", "secantusdb")
        data = self.data_dir()
        log(f"mongo: {'reusing' if data.exists() else 'new'} data folder {data}")
        # an explicit (empty) config file turns off the auto-discovery of
        # ./secantusd.toml, ~/.secantus/secantusd.toml and /etc/secantus/secantusd.toml
        conf = self.dir / "secantusd.toml"
        conf.write_text("# written by scripts/services: all settings are on the command line\n")
        return [sys.executable, "-m", "secantus", "--config", str(conf), "--host", HOST,
                "--port", str(port), "--storage-path", str(data), "--log-level", "WARNING"]

    def probe(self) -> str | None:
        """A MongoDB ping."""
        pymongo = need("pymongo", "pymongo")

        def ask() -> str | None:
            with pymongo.MongoClient(self.address(), serverSelectionTimeoutMS=2000, connectTimeoutMS=2000) as c:
                c.admin.command("ping")
            return None
        return probing("mongo", (pymongo.errors.ConfigurationError, TypeError, AttributeError), ask)


# --------------------------------------------------------------------------- commands

@contextlib.contextmanager
def locked():
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with open(RUN_DIR / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


USAGE = """usage: scripts/services COMMAND
  up                          start Kafka and SecantusDB (idempotent), print export lines
  down                        stop both and delete their data and logs
  status                      show what runs; exit 0 if all up, 3 otherwise
  stop-kafka | stop-mongo     stop one service, keep its data (--kill: SIGKILL, no clean shutdown)
  start-kafka | start-mongo   start it again on its kept data, print its export line
  env                         print the export lines of what runs (starts nothing)
Environment: STREAMKIT_KAFKA_PORT (9092), STREAMKIT_KAFKA_CONTROLLER_PORT (Kafka port + 1),
  STREAMKIT_MONGO_PORT (27017), STREAMKIT_SERVICES_DIR (<repo>/.services),
  STREAMKIT_CACHE (~/.cache/streamkit), STREAMKIT_KAFKA_TIMEOUT (90), STREAMKIT_MONGO_TIMEOUT (60),
  STREAMKIT_STOP_TIMEOUT (10); KAFKA_BOOTSTRAP / MONGO_URI set to another server: not started."""


def run(cmd: str, args: list[str]) -> int:
    kafka_port = env_int("STREAMKIT_KAFKA_PORT", 9092)
    stop_timeout = env_int("STREAMKIT_STOP_TIMEOUT", 10)
    kafka = Kafka(kafka_port, env_int("STREAMKIT_KAFKA_CONTROLLER_PORT", kafka_port + 1),
                  env_int("STREAMKIT_KAFKA_TIMEOUT", 90), stop_timeout)
    mongo = Mongo(env_int("STREAMKIT_MONGO_PORT", 27017), env_int("STREAMKIT_MONGO_TIMEOUT", 60), stop_timeout)
    both = [kafka, mongo]
    if cmd == "up":
        t0 = time.monotonic()
        with locked():
            lines = [s.start() for s in both]
        print("\n".join(lines))
        log(f"up in {time.monotonic() - t0:.1f}s")
        return 0
    if cmd == "down":
        with locked():
            for s in both:
                s.remove()
        with contextlib.suppress(OSError):
            (RUN_DIR / ".lock").unlink()
            RUN_DIR.rmdir()  # only if empty
        return 0
    if cmd == "status":
        results = [s.status() for s in both]
        print("\n".join(text for _, text in results))
        return 0 if all(ok for ok, _ in results) else 3
    if cmd == "env":
        for s in both:
            ext = s.external()
            if ext or s.process():
                print(s.export_line(ext or s.address()))
        return 0
    m = re.fullmatch(r"(start|stop|restart)-(kafka|mongo)", cmd)
    if not m:
        print(USAGE, file=sys.stderr)
        return 2
    s = kafka if m.group(2) == "kafka" else mongo
    with locked():
        if m.group(1) in ("stop", "restart"):
            if s.external():
                raise Fail(f"{s.env_var} points at a server this script does not manage")
            if not s.process():
                log(f"{s.name} is not running")
            s.stop(kill_now="--kill" in args)
        if m.group(1) in ("start", "restart"):
            print(s.start())
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, file=sys.stderr if not argv else sys.stdout)
        return 0 if argv else 2
    try:
        return run(argv[0], argv[1:])
    except Fail as e:
        log(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        log("error: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
