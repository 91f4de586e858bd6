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
* State (pids, configs, data, logs) lives in $STREAMKIT_SERVICES_DIR (default <repo>/.services).

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
from xml.sax.saxutils import quoteattr

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
POM = HERE / "kafka" / "pom.xml"

RUN_DIR = Path(os.environ.get("STREAMKIT_SERVICES_DIR") or (REPO / ".services")).expanduser().absolute()
CACHE_DIR = Path(os.environ.get("STREAMKIT_CACHE") or "~/.cache/streamkit").expanduser().absolute()
HOST = "127.0.0.1"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        die(f"{name}={raw!r} is not a number")


KAFKA_PORT = None  # set in main() (so that die() is defined before use)
KAFKA_CONTROLLER_PORT = None
MONGO_PORT = None
KAFKA_TIMEOUT = None
MONGO_TIMEOUT = None
STOP_TIMEOUT = None


class Fail(Exception):
    pass


def log(msg: str) -> None:
    try:
        print(f"services: {msg}", file=sys.stderr, flush=True)
    except OSError:  # stderr closed (e.g. piped into `head`): keep going
        pass


def die(msg: str, code: int = 1):
    log(f"error: {msg}")
    sys.exit(code)


def kafka_version() -> str:
    m = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", POM.read_text())
    if not m:
        die(f"no <kafka.version> property in {POM}")
    return m.group(1)


# --------------------------------------------------------------------------- processes

def _proc_stat(pid: int):
    """(state, pgid) of a process, or None if it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = raw[raw.rindex(")") + 2:].split()
    return rest[0], int(rest[2])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int | None, marker: str | None = None) -> bool:
    """True if pid runs (not a zombie) and, if given, its command line contains marker
    (guards against a recycled pid)."""
    if not pid:
        return False
    st = _proc_stat(pid)
    if st is None or st[0] in ("Z", "X"):
        return False
    return marker is None or marker in _cmdline(pid)


def group_members(pgid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        st = _proc_stat(int(d.name))
        if st and st[1] == pgid and st[0] not in ("Z", "X"):
            out.append(int(d.name))
    return out


def stop_group(pid: int, name: str, kill_now: bool = False) -> None:
    """SIGTERM the process group led by pid (started with start_new_session), SIGKILL
    whatever is left after STOP_TIMEOUT seconds."""
    pgid = pid
    sigs = [signal.SIGKILL] if kill_now else [signal.SIGTERM, signal.SIGKILL]
    for sig in sigs:
        members = group_members(pgid)
        if not members:
            return
        log(f"stopping {name} (pid {pid}) with {sig.name}")
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            for p in members:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(p, sig)
        deadline = time.monotonic() + (STOP_TIMEOUT if sig == signal.SIGTERM else 10)
        while time.monotonic() < deadline:
            if not group_members(pgid):
                return
            time.sleep(0.1)
        if sig == signal.SIGTERM:
            log(f"{name} still running {STOP_TIMEOUT}s after SIGTERM")
    if group_members(pgid):
        raise Fail(f"could not stop {name} (process group {pgid}: {group_members(pgid)})")


def spawn(cmd: list[str], cwd: Path, out_file: Path, env: dict | None = None) -> subprocess.Popen:
    # stdin/stdout/stderr never stay attached to ours: `eval "$(services up)"` waits for
    # every holder of the pipe to close it.
    with open(out_file, "ab") as out:
        return subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, env=env)


def tail(path: Path, n: int = 30) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"  ({path} does not exist)"
    return "\n".join("  | " + ln for ln in lines[-n:]) or f"  ({path} is empty)"


# --------------------------------------------------------------------------- ports

def port_free(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((HOST, port))
    except OSError:
        return False
    finally:
        s.close()
    return True


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_owner(port: int) -> str:
    if shutil.which("ss"):
        try:
            out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True,
                                 text=True, timeout=5).stdout.strip()
            m = re.search(r'users:\(\("([^"]+)",pid=(\d+)', out)
            if m:
                return f" by {m.group(1)} (pid {m.group(2)})"
        except (OSError, subprocess.SubprocessError):
            pass
    return ""


def require_ports(name: str, ports: list[int], env_hint: str) -> None:
    for p in ports:
        if not port_free(p):
            raise Fail(f"cannot start {name}: port {HOST}:{p} is already in use{port_owner(p)}. "
                       f"Stop that process, or pick other ports with {env_hint}, or point "
                       f"the tests at a running server with the service's URL variable.")


# --------------------------------------------------------------------------- state

class Service:
    name = ""
    env_var = ""
    marker = ""

    def __init__(self):
        self.dir = RUN_DIR / self.name
        self.state_file = self.dir / "state.json"

    # state: {"pid": int|None, "ports": [...], ...}
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

    def pid(self) -> int | None:
        pid = self.state().get("pid")
        return pid if alive(pid, self.marker_for()) else None

    def marker_for(self) -> str:
        return str(self.dir)

    def port(self) -> int:
        return self.state().get("port") or self.default_port()

    def default_port(self) -> int:
        raise NotImplementedError

    def address(self, port: int | None = None) -> str:
        raise NotImplementedError

    def external(self) -> str | None:
        """The value of env_var if it names a server this script does not manage."""
        val = os.environ.get(self.env_var)
        if not val:
            return None
        if self._normalize(val) == self._normalize(self.address()):
            # Most likely our own export from an earlier `up` (e.g. `up` again after `down`
            # in a shell that eval'ed it). Manage it, unless someone else serves that port.
            if self.pid() or port_free(self.port()):
                return None
        return val

    @staticmethod
    def _normalize(addr: str) -> str:
        return addr.strip().rstrip("/").replace("localhost", HOST)

    def export_line(self, value: str) -> str:
        return f"export {self.env_var}={value}"

    # -- commands
    def start(self) -> str:
        ext = self.external()
        if ext:
            log(f"{self.env_var} is set ({ext}): not starting {self.name}")
            return self.export_line(ext)
        pid = self.pid()
        if pid:
            self.wait_ready(None)
            log(f"{self.name} already running (pid {pid}) at {self.address()}")
            return self.export_line(self.address())
        self._start()
        return self.export_line(self.address())

    def stop(self, kill_now: bool = False) -> None:
        st = self.state()
        pid = st.get("pid")
        if pid and alive(pid, self.marker_for()):
            stop_group(pid, self.name, kill_now)
        elif pid:
            # leader gone: stop what is left of its group, if it is still ours
            for p in group_members(pid):
                if self.marker_for() in _cmdline(p):
                    stop_group(p, self.name, kill_now) if p == pid else os.kill(p, signal.SIGKILL)
        if st:
            st["pid"] = None
            self.save(st)

    def remove(self) -> None:
        self.stop()
        if self.dir.exists():
            shutil.rmtree(self.dir)
            log(f"removed {self.dir}")

    def status(self) -> tuple[bool, str]:
        ext = self.external()
        if ext:
            host, port = self.host_port(ext)
            ok = port_open(host, port) if host else False
            return ok, f"{self.name}: external {self.env_var}={ext} ({'reachable' if ok else 'NOT reachable'})"
        st = self.state()
        pid = self.pid()
        if pid:
            ok = port_open(HOST, self.port())
            return ok, (f"{self.name}: running, pid {pid}, {self.address()}"
                        + ("" if ok else " (port not accepting connections yet)")
                        + f", data {self.data_dir()}")
        if st:
            return False, f"{self.name}: stopped (data kept in {self.data_dir()})"
        return False, f"{self.name}: not started"

    def host_port(self, value: str):
        m = re.search(r"(?:^|//|,)([^:/,@]+):(\d+)", value)
        return (m.group(1), int(m.group(2))) if m else (None, None)

    def data_dir(self) -> Path:
        return self.dir / "data"

    def _start(self) -> None:
        raise NotImplementedError

    def wait_ready(self, proc) -> None:
        raise NotImplementedError


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

    def default_port(self) -> int:
        return KAFKA_PORT

    def address(self, port: int | None = None) -> str:
        return f"{HOST}:{port or self.port()}"

    def marker_for(self) -> str:
        return str(self.dir / "server.properties")

    def libs(self) -> Path:
        return CACHE_DIR / f"kafka-{kafka_version()}" / "libs"

    def ensure_libs(self) -> Path:
        libs = self.libs()
        stamp = libs.parent / "libs.ok"
        want = hashlib.sha256(POM.read_bytes()).hexdigest()
        if libs.is_dir() and stamp.exists() and stamp.read_text().strip() == want:
            return libs
        mvn = shutil.which("mvn")
        if not mvn:
            raise Fail("Maven (`mvn`) is needed once to fetch the Kafka jars "
                       "(Debian: apt-get install maven)")
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
        data = self.data_dir()
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{cport}",
            "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{cport}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(data),
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
        (self.dir / "log4j2.xml").write_text(LOG4J2_XML.format(file=quoteattr(str(self.dir / "kafka.log"))))
        return f

    def _start(self) -> None:
        st = self.state()
        port = st.get("port") or KAFKA_PORT
        cport = st.get("controller_port") or KAFKA_CONTROLLER_PORT
        if st and (port, cport) != (KAFKA_PORT, KAFKA_CONTROLLER_PORT):
            log(f"kafka: reusing the ports of its kept data folder ({port}/{cport}); "
                f"`down` first to change them")
        require_ports("kafka", [port, cport], "STREAMKIT_KAFKA_PORT / STREAMKIT_KAFKA_CONTROLLER_PORT")
        libs = self.ensure_libs()
        java = self.java()
        self.dir.mkdir(parents=True, exist_ok=True)
        props = self.write_config(port, cport)
        cp = f"{libs}/*"
        data = self.data_dir()
        cluster_id = st.get("cluster_id")
        if not (data / "meta.properties").exists():
            shutil.rmtree(data, ignore_errors=True)
            cluster_id = new_cluster_id()
            log(f"kafka: formatting a new data folder {data}")
            r = subprocess.run([java, "-Xmx256m", f"-Dlog4j2.configurationFile={self.dir / 'log4j2.xml'}",
                                "-cp", cp, "kafka.tools.StorageTool", "format",
                                "-t", cluster_id, "-c", str(props)],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True)
            (self.dir / "format.out").write_text(r.stdout + r.stderr)
            if r.returncode != 0:
                raise Fail(f"kafka storage format failed (exit {r.returncode}):\n{tail(self.dir / 'format.out')}")
        else:
            log(f"kafka: reusing data folder {data}")
        out = self.dir / "kafka.out"
        with open(out, "a") as f:
            f.write(f"\n=== start {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n")
        cmd = [java, "-Xms128m", "-Xmx512m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
               "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
               f"-Dlog4j2.configurationFile={self.dir / 'log4j2.xml'}",
               f"-Dkafka.logs.dir={self.dir}",
               "-cp", cp, "kafka.Kafka", str(props)]
        t0 = time.monotonic()
        proc = spawn(cmd, self.dir, out)
        self.save({"pid": proc.pid, "port": port, "controller_port": cport,
                   "cluster_id": cluster_id, "version": kafka_version(), "started": time.time()})
        log(f"kafka: started pid {proc.pid}, waiting for {self.address(port)}")
        try:
            self.wait_ready(proc)
        except Fail:
            self.stop(kill_now=True)
            raise
        log(f"kafka: ready at {self.address(port)} after {time.monotonic() - t0:.1f}s")

    def wait_ready(self, proc) -> None:
        """A real metadata round trip with kafka-python; fail fast if the JVM dies."""
        try:
            from kafka import KafkaAdminClient
            from kafka.errors import KafkaConfigurationError
        except ImportError:
            raise Fail("kafka-python is not installed in this Python (pip install kafka-python)")
        import logging
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
        addr = self.address()
        deadline = time.monotonic() + KAFKA_TIMEOUT
        last = None
        while True:
            if proc is not None and proc.poll() is not None:
                raise Fail(f"kafka exited with code {proc.returncode} during startup; last lines of "
                           f"{self.dir / 'kafka.log'}:\n{tail(self.dir / 'kafka.log')}\n"
                           f"{self.dir / 'kafka.out'}:\n{tail(self.dir / 'kafka.out', 15)}")
            if proc is None and not self.pid():
                raise Fail("kafka is not running")
            if port_open(HOST, self.port()):
                admin = None
                try:
                    admin = KafkaAdminClient(bootstrap_servers=addr, client_id="streamkit-services",
                                             request_timeout_ms=5000, bootstrap_timeout_ms=5000)
                    cluster = admin.describe_cluster()
                    if cluster.get("brokers"):
                        return
                    last = "no broker in the metadata yet"
                except (KafkaConfigurationError, TypeError, AttributeError) as e:
                    raise Fail(f"kafka readiness check is broken: {type(e).__name__}: {e}")
                except Exception as e:  # noqa: BLE001 - any other failure means "not yet"
                    last = f"{type(e).__name__}: {e}"
                finally:
                    if admin is not None:
                        with contextlib.suppress(Exception):
                            admin.close()
            else:
                last = "port not open yet"
            if time.monotonic() > deadline:
                raise Fail(f"kafka not ready after {KAFKA_TIMEOUT}s ({last}); last lines of "
                           f"{self.dir / 'kafka.log'}:\n{tail(self.dir / 'kafka.log')}")
            time.sleep(0.3)


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

    def default_port(self) -> int:
        return MONGO_PORT

    def address(self, port: int | None = None) -> str:
        return f"mongodb://{HOST}:{port or self.port()}"

    def marker_for(self) -> str:
        return str(self.data_dir())

    def _start(self) -> None:
        st = self.state()
        port = st.get("port") or MONGO_PORT
        if st and port != MONGO_PORT:
            log(f"mongo: reusing the port of its kept data folder ({port}); `down` first to change it")
        require_ports("mongo", [port], "STREAMKIT_MONGO_PORT")
        try:
            import secantus  # noqa: F401
        except ImportError:
            raise Fail(f"secantusdb is not installed in {sys.executable} (pip install secantusdb)")
        self.dir.mkdir(parents=True, exist_ok=True)
        data = self.data_dir()
        log(f"mongo: {'reusing' if data.exists() else 'new'} data folder {data}")
        # an explicit (empty) config file turns off the auto-discovery of
        # ./secantusd.toml, ~/.secantus/secantusd.toml and /etc/secantus/secantusd.toml
        conf = self.dir / "secantusd.toml"
        conf.write_text("# written by scripts/services: all settings are on the command line\n")
        out = self.dir / "mongo.log"
        with open(out, "a") as f:
            f.write(f"\n=== start {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n")
        cmd = [sys.executable, "-m", "secantus", "--config", str(conf), "--host", HOST,
               "--port", str(port), "--storage-path", str(data), "--log-level", "WARNING"]
        t0 = time.monotonic()
        proc = spawn(cmd, self.dir, out)
        self.save({"pid": proc.pid, "port": port, "started": time.time()})
        log(f"mongo: started pid {proc.pid}, waiting for {self.address(port)}")
        try:
            self.wait_ready(proc)
        except Fail:
            self.stop(kill_now=True)
            raise
        log(f"mongo: ready at {self.address(port)} after {time.monotonic() - t0:.1f}s")

    def wait_ready(self, proc) -> None:
        try:
            import pymongo
            import pymongo.errors
        except ImportError:
            raise Fail("pymongo is not installed in this Python (pip install pymongo)")
        deadline = time.monotonic() + MONGO_TIMEOUT
        last = None
        while True:
            if proc is not None and proc.poll() is not None:
                raise Fail(f"secantus exited with code {proc.returncode} during startup; last lines of "
                           f"{self.dir / 'mongo.log'}:\n{tail(self.dir / 'mongo.log')}")
            if proc is None and not self.pid():
                raise Fail("mongo is not running")
            if port_open(HOST, self.port()):
                client = None
                try:
                    client = pymongo.MongoClient(self.address(), serverSelectionTimeoutMS=2000,
                                                 connectTimeoutMS=2000)
                    client.admin.command("ping")
                    return
                except (pymongo.errors.ConfigurationError, TypeError, AttributeError) as e:
                    raise Fail(f"mongo readiness check is broken: {type(e).__name__}: {e}")
                except Exception as e:  # noqa: BLE001 - any other failure means "not yet"
                    last = f"{type(e).__name__}: {e}"
                finally:
                    if client is not None:
                        client.close()
            else:
                last = "port not open yet"
            if time.monotonic() > deadline:
                raise Fail(f"mongo not ready after {MONGO_TIMEOUT}s ({last}); last lines of "
                           f"{self.dir / 'mongo.log'}:\n{tail(self.dir / 'mongo.log')}")
            time.sleep(0.2)


# --------------------------------------------------------------------------- commands

@contextlib.contextmanager
def locked():
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with open(RUN_DIR / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def cmd_up(services: list[Service]) -> int:
    t0 = time.monotonic()
    lines = []
    with locked():
        for s in services:
            lines.append(s.start())
    for ln in lines:
        print(ln)
    log(f"up in {time.monotonic() - t0:.1f}s")
    return 0


def cmd_down(services: list[Service]) -> int:
    with locked():
        for s in services:
            s.remove()
    with contextlib.suppress(OSError):
        (RUN_DIR / ".lock").unlink()
        RUN_DIR.rmdir()  # only if empty
    return 0


def cmd_status(services: list[Service]) -> int:
    all_ok = True
    for s in services:
        ok, text = s.status()
        all_ok &= ok
        print(text)
    return 0 if all_ok else 3


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


def main(argv: list[str]) -> int:
    global KAFKA_PORT, KAFKA_CONTROLLER_PORT, MONGO_PORT, KAFKA_TIMEOUT, MONGO_TIMEOUT, STOP_TIMEOUT
    KAFKA_PORT = _env_int("STREAMKIT_KAFKA_PORT", 9092)
    KAFKA_CONTROLLER_PORT = _env_int("STREAMKIT_KAFKA_CONTROLLER_PORT", KAFKA_PORT + 1)
    MONGO_PORT = _env_int("STREAMKIT_MONGO_PORT", 27017)
    KAFKA_TIMEOUT = _env_int("STREAMKIT_KAFKA_TIMEOUT", 90)
    MONGO_TIMEOUT = _env_int("STREAMKIT_MONGO_TIMEOUT", 60)
    STOP_TIMEOUT = _env_int("STREAMKIT_STOP_TIMEOUT", 10)

    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, file=sys.stderr if not argv else sys.stdout)
        return 0 if argv else 2
    cmd, args = argv[0], argv[1:]
    kafka, mongo = Kafka(), Mongo()
    both = [kafka, mongo]
    one = {"kafka": kafka, "mongo": mongo}
    kill_now = "--kill" in args
    try:
        if cmd == "up":
            return cmd_up(both)
        if cmd == "down":
            return cmd_down(both)
        if cmd == "status":
            return cmd_status(both)
        if cmd == "env":
            for s in both:
                ext = s.external()
                if ext or s.pid():
                    print(s.export_line(ext or s.address()))
            return 0
        m = re.fullmatch(r"(start|stop|restart)-(kafka|mongo)", cmd)
        if m:
            s = one[m.group(2)]
            with locked():
                if m.group(1) in ("stop", "restart"):
                    if s.external():
                        raise Fail(f"{s.env_var} points at a server this script does not manage")
                    if not s.pid():
                        log(f"{s.name} is not running")
                    s.stop(kill_now)
                if m.group(1) in ("start", "restart"):
                    print(s.start())
            return 0
    except Fail as e:
        die(str(e))
    except KeyboardInterrupt:
        die("interrupted", 130)
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
