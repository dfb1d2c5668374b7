"""Shared pieces of the load benches: services, the bench database, gunicorn, request pools and wrk.

Every bench runs the real app under gunicorn against its own PostgreSQL database and Redis db, drives it with wrk
(bench/pool.lua replays pre-generated raw requests, each once) and compares it with a bare Flask "floor" app served
by the same gunicorn configuration.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
VENV_BIN = ROOT / ".venv" / "bin"
POOL_LUA = ROOT / "bench" / "pool.lua"

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379

# The one gunicorn configuration every bench and its floor use; bench/README.md says how it was picked.
GUNICORN_ARGS = ("--config", str(ROOT / "gunicorn.conf.py"))  # 4 workers × gthread(8), the gc hook


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 120, quiet: bool = True) -> str:
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    if not quiet:
        print(done.stdout, end="")
    return done.stdout


# --- services ---------------------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    log("installing wrk (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-qq"], env=env, timeout=120)
    run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, timeout=120)
    path = shutil.which("wrk")
    if not path:
        raise RuntimeError("wrk is still missing after apt-get install")
    return path


def _wait(check: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout:.0f}s")
        time.sleep(0.25)


def _pg_ready() -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", PG_HOST, "-p", str(PG_PORT)]).returncode == 0


def _redis_ready() -> bool:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def ensure_services() -> None:
    """PostgreSQL and Redis up (started the way scripts/test.sh starts them if they are down)."""
    if not _pg_ready():
        log("starting PostgreSQL")
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"])
        _wait(_pg_ready, "PostgreSQL", 30)
    if not _redis_ready():
        log("starting Redis")
        run(
            [
                "redis-server",
                "--daemonize",
                "yes",
                "--bind",
                REDIS_HOST,
                "--port",
                str(REDIS_PORT),
                "--save",
                "",
                "--appendonly",
                "no",
            ]
        )
        _wait(_redis_ready, "Redis", 15)


def database_url(name: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def ensure_database(name: str) -> None:
    exists = run(
        [
            "psql",
            "-h",
            PG_HOST,
            "-U",
            PG_USER,
            "-d",
            "postgres",
            "-Atc",
            f"SELECT 1 FROM pg_database WHERE datname = '{name}'",
        ]
    ).strip()
    if not exists:
        log(f"creating database {name}")
        run(["createdb", "-h", PG_HOST, "-U", PG_USER, name])


def flush_redis(db: int) -> None:
    run(["redis-cli", "-h", REDIS_HOST, "-p", str(REDIS_PORT), "-n", str(db), "FLUSHDB"])


def app_env(database: str, redis_db: int, **extra: str) -> dict[str, str]:
    """Environment for the app (production settings) pointing at the bench database and Redis db."""
    return {
        **os.environ,
        "APP_ENV": "production",
        "DATABASE_URL": database_url(database),
        "REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}",
        "SECRET_KEY": "bench-secret-key-0123456789abcdef0123456789",
        "PII_KEY": "YmVuY2gtcGlpLWtleS0wMTIzNDU2Nzg5YWJjZGVmMDE=",
        "CHECKIN_SIGNING_KEY": "YmVuY2gtY2hlY2tpbi1zaWduaW5nLWtleS0wMTIzNDU=",
        "WECHAT_TOKEN": "benchtoken",
        "WECHAT_APPID": "wxbench000000000",
        "WECHAT_SECRET": "benchsecret",
        "WECHAT_AES_KEY": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        "WECHAT_API_BASE": "http://127.0.0.1:9/",  # nothing listens: a bench must never reach WeChat
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def migrate(env: dict[str, str]) -> None:
    run([str(VENV_BIN / "flask"), "--app", "wsgi", "db", "upgrade"], env=env, timeout=120)


def psql(database: str, sql: str) -> str:
    return run(["psql", "-h", PG_HOST, "-U", PG_USER, "-d", database, "-v", "ON_ERROR_STOP=1", "-Atc", sql]).strip()


# --- gunicorn -----------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    pids: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]


_servers: list[Server] = []


def wait_http(url: str, timeout: float = 30, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited ({process.returncode}) before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f}s")
        time.sleep(0.2)


def stop(server: Server, timeout: float = 10) -> None:
    """Graceful stop of the whole process group (master and workers), SIGKILL after `timeout`."""
    if server in _servers:
        _servers.remove(server)
    if server.process.poll() is None:
        try:
            os.killpg(server.process.pid, signal.SIGTERM)
            server.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=5)
        except ProcessLookupError:
            pass
    try:  # orphaned workers, if the master died first
        os.killpg(server.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop_all() -> None:
    for server in list(_servers):
        stop(server)


@contextmanager
def gunicorn(
    name: str, app: str, env: dict[str, str], *, args: Iterable[str] = GUNICORN_ARGS, ready_path: str = "/healthz"
) -> Iterator[Server]:
    """gunicorn serving `app` on a free loopback port in its own process group; stopped on exit."""
    OUT.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = OUT / f"gunicorn-{name}.log"
    cmd = [str(VENV_BIN / "gunicorn"), app, "--bind", f"127.0.0.1:{port}", "--chdir", str(ROOT), *args]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(name, port, process, log_path)
    _servers.append(server)
    try:
        wait_http(server.url + ready_path, process=process)
        log(f"{name}: gunicorn {' '.join(args)} on :{port} (pid {process.pid})")
        yield server
    finally:
        stop(server)


def spawn(name: str, cmd: list[str], env: dict[str, str], *, port: int = 0) -> Server:
    """Any long-running process (a celery worker, beat, an emulator) in its own process group, logged to
    bench/out/<name>.log and stopped like the gunicorn servers: by `stop`, `stop_all` or install_cleanup."""
    OUT.mkdir(parents=True, exist_ok=True)
    log_path = OUT / f"{name}.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(name, port, process, log_path)
    _servers.append(server)
    return server


def install_cleanup() -> None:
    """Stop every started server on normal exit, on SIGTERM/SIGINT/SIGHUP (e.g. `timeout`) and on errors."""

    def handler(signum: int, frame: Any) -> None:
        stop_all()
        sys.exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, handler)
    import atexit

    atexit.register(stop_all)


# --- request pools and wrk ----------------------------------------------------------------------------------------


def raw_request(
    method: str, path: str, body: bytes = b"", *, host: str = "127.0.0.1", content_type: str = "text/xml"
) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
    if body or method in ("POST", "PUT", "PATCH"):
        head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def write_pool(prefix: Path, requests: Iterable[bytes], threads: int) -> list[int]:
    """Deal raw requests round-robin into `<prefix>.<thread>` files for bench/pool.lua; returns counts per thread."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    files = [open(f"{prefix}.{i}", "wb") for i in range(threads)]  # noqa: SIM115
    counts = [0] * threads
    try:
        for n, request in enumerate(requests):
            files[n % threads].write(b"%d\n" % len(request) + request)
            counts[n % threads] += 1
    finally:
        for f in files:
            f.close()
    return counts


@dataclass
class WrkResult:
    label: str
    rps: float
    completed: int
    ok200: int
    sent: int
    errors: int
    error_detail: dict[str, int]
    latency_ms: dict[str, float]
    duration_s: float
    first_bad: str
    wrk_cpu_s: float
    output: str

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "output"}


def run_wrk(
    label: str,
    url: str,
    pool: Path,
    *,
    threads: int = 2,
    connections: int = 32,
    duration: float = 12,
    cycle: bool = False,
    check: str = "none",
    expected: str = "",
    timeout_s: float = 2,
) -> WrkResult:
    """wrk with bench/pool.lua; errors = socket errors + non-200 + unexpected bodies + pool exhaustion."""
    cmd = [
        "wrk",
        "--latency",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{duration:g}s",
        "--timeout",
        f"{timeout_s:g}s",
        "-s",
        str(POOL_LUA),
        url,
        "--",
        str(pool),
        "1" if cycle else "0",
        check,
        expected,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    match = re.search(r"^BENCH_JSON (.*)$", done.stdout, re.MULTILINE)
    if not match:
        raise RuntimeError(f"wrk printed no BENCH_JSON line:\n{done.stdout}\n{done.stderr}")
    data = json.loads(match.group(1))
    socket_errors = data["socket_errors"]
    detail = {f"socket_{k}": v for k, v in socket_errors.items() if k != "status"}
    detail.update(bad_status=data["bad_status"], bad_body=data["bad_body"], pool_exhausted=data["exhausted"])
    duration_s = data["duration_us"] / 1e6
    latency = {k: round(v / 1000, 2) for k, v in data["latency_us"].items()}
    return WrkResult(
        label=label,
        rps=round(data["completed"] / duration_s, 1),
        completed=data["completed"],
        ok200=data["ok200"],
        sent=data["sent"],
        errors=sum(detail.values()),
        error_detail=detail,
        latency_ms=latency,
        duration_s=round(duration_s, 2),
        first_bad=data["first_bad"],
        wrk_cpu_s=round(wrk_cpu, 2),
        output=done.stdout,
    )


class CpuSampler:
    """CPU seconds used per process group over a window (from /proc): where the machine's cores went during a run.

    Groups: each gunicorn server given (its whole process group), postgres, redis, and everything else. Processes
    that start and exit inside the window are missed: wrk is (run_wrk measures its CPU itself), PostgreSQL backends
    are not (they live as long as the app's pool).
    """

    def __init__(self, servers: Iterable[Server] = ()) -> None:
        self.groups = {server.process.pid: server.name for server in servers}
        self.tick = os.sysconf("SC_CLK_TCK")

    def _snapshot(self) -> dict[int, tuple[str, float, float]]:
        snap: dict[int, tuple[str, float, float]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    raw = f.read()
            except OSError:
                continue
            comm = raw[raw.index("(") + 1 : raw.rindex(")")]
            fields = raw[raw.rindex(")") + 2 :].split()
            pgid, user, system = int(fields[2]), int(fields[11]) / self.tick, int(fields[12]) / self.tick
            if pgid in self.groups:
                group = self.groups[pgid]
            elif comm.startswith("postgres"):
                group = "postgres"
            elif comm.startswith("redis"):
                group = "redis"
            elif comm == "wrk":
                group = "wrk"
            else:
                group = "other"
            snap[int(entry.name)] = (group, user, system)
        return snap

    def __enter__(self) -> CpuSampler:
        self.start, self.t0 = self._snapshot(), time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        end, elapsed = self._snapshot(), time.monotonic() - self.t0
        used: dict[str, float] = {}
        system = 0.0
        for pid, (group, user1, sys1) in end.items():
            _, user0, sys0 = self.start.get(pid, (group, 0.0, 0.0))
            used[group] = used.get(group, 0.0) + user1 + sys1 - user0 - sys0
            system += sys1 - sys0
        cores = os.cpu_count() or 1
        self.result = {
            "window_s": round(elapsed, 2),
            "cores": cores,
            "busy_pct_of_machine": round(100 * sum(used.values()) / (elapsed * cores), 1),
            "kernel_pct_of_busy": round(100 * system / max(sum(used.values()), 1e-9), 1),
            "cpu_s": {k: round(v, 2) for k, v in sorted(used.items(), key=lambda kv: -kv[1])},
        }

    def describe(self) -> str:
        r = self.result
        parts = ", ".join(f"{k} {v:.1f}" for k, v in r["cpu_s"].items())
        return (
            f"CPU {r['busy_pct_of_machine']}% of {r['cores']} cores over {r['window_s']}s "
            f"({r['kernel_pct_of_busy']}% kernel); cpu-seconds: {parts}"
        )


def latency_bound(connections: int, p99_ms: float, floor_rps: float) -> str:
    """Little's law for a closed-loop driver: every connection always has a request out, so the mean latency is
    connections / throughput, and a p99 under the target needs at least this throughput (more, as p99 > mean)."""
    need = connections / (p99_ms / 1000)
    return (
        f"Little's law: {connections} connections always waiting -> mean latency = {connections} / throughput; "
        f"p99 < {p99_ms:g} ms needs over {need:,.0f} req/s ({need / floor_rps:.2f} of this floor) "
        "even if every request took the mean"
    )


def write_json(name: str, data: dict[str, Any]) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return path
