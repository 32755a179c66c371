"""The benchmark's plumbing: set-up, child processes, load generators, RSS, machine facts.

Every child runs in a process group of its own and is registered with :class:`Processes`,
whose ``stop_all`` (called from ``finally`` blocks and on SIGTERM/SIGINT) signals each group
with SIGTERM, waits, then SIGKILLs what is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WORK = Path(os.environ.get("BENCH_WORK_DIR") or BENCH / ".work")
"""Generated configs, logs and event files; BENCH_WORK_DIR gives a run a folder of its own."""
PYTHON = sys.executable
LITELLM_VERSION = "1.106.0"
"""Pinned LiteLLM: the targets name 1.106.x; 1.106.0 is the newest 1.106 that installs
here (1.106.1+ require a certifi newer than the registry serves)."""
LITELLM_VENV = BENCH / ".work" / "litellm-venv"
CLIENT_KEY = "sk-bench"

GATEWAY_DEPS = (
    "litestar",
    "uvicorn",
    "uvloop",
    "httptools",
    "httpx",
    "httpx-aiohttp",
    "aiohttp",
    "msgspec",
    "structlog",
    "prometheus-client",
    "pydantic",
    "pydantic-settings",
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# set-up from the registries


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def ensure_debian_tools(tools: Sequence[str] = ("wrk", "nginx")) -> list[str]:
    """apt-get install the missing tools when we are root with apt; returns what is missing."""
    missing = [t for t in tools if not have(t) and not Path(f"/usr/sbin/{t}").exists()]
    if missing and have("apt-get") and os.geteuid() == 0:
        log(f"installing {' '.join(missing)} with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=False, env=env, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", *missing], check=False, env=env, capture_output=True
        )
    return [t for t in tools if not have(t) and not Path(f"/usr/sbin/{t}").exists()]


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )


def bench_extra() -> list[str]:
    """The ``bench`` optional dependencies from pyproject.toml (one source of truth)."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras: list[str] = data["project"]["optional-dependencies"].get("bench", [])
    return extras


def ensure_bench_extra() -> None:
    """pip install the bench extra's packages into this virtualenv when one is missing."""
    missing = []
    for requirement in bench_extra():
        name = re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0]
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(requirement)
    if missing:
        log(f"installing {' '.join(missing)} into {sys.prefix}")
        subprocess.run(
            [PYTHON, "-m", "pip", "install", "-q", "--disable-pip-version-check", *missing],
            check=False,
        )


def litellm_bin() -> Path:
    return LITELLM_VENV / "bin" / "litellm"


def ensure_litellm() -> str | None:
    """A virtualenv of its own with ``litellm[proxy]==LITELLM_VERSION``; its version or None."""
    version = litellm_version()
    if version == LITELLM_VERSION:
        return version
    log(f"installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV} (a minute or two)")
    LITELLM_VENV.parent.mkdir(parents=True, exist_ok=True)
    if not (LITELLM_VENV / "bin" / "python").exists():
        subprocess.run([PYTHON, "-m", "venv", str(LITELLM_VENV)], check=False)
    with (LITELLM_VENV.parent / "litellm-install.log").open("wb") as out:
        subprocess.run(
            [
                str(LITELLM_VENV / "bin" / "pip"),
                "install",
                "-q",
                "--disable-pip-version-check",
                f"litellm[proxy]=={LITELLM_VERSION}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    return litellm_version()


def litellm_version() -> str | None:
    python = LITELLM_VENV / "bin" / "python"
    if not python.exists():
        return None
    found = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip() or None if found.returncode == 0 else None


# ---------------------------------------------------------------------------------------------
# processes


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class Processes:
    """The children this run started; ``stop_all`` ends every one of them."""

    children: list[Child] = field(default_factory=list)

    def start(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cpus: set[int] | None = None,
        stdout: IO[bytes] | None = None,
    ) -> Child:
        WORK.mkdir(parents=True, exist_ok=True)
        log_path = WORK / f"{name}.log"
        out = stdout if stdout is not None else log_path.open("ab")

        def pin() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)

        proc = subprocess.Popen(
            list(cmd),
            stdout=out,
            stderr=subprocess.STDOUT if stdout is None else log_path.open("ab"),
            env={**os.environ, **(env or {})},
            cwd=ROOT,
            start_new_session=True,
            preexec_fn=pin if cpus else None,  # noqa: PLW1509 -- the harness has no threads
        )
        child = Child(name, proc, log_path)
        self.children.append(child)
        return child

    def stop(self, child: Child, timeout: float = 10.0) -> None:
        if child.proc.poll() is None:
            _signal_group(child.proc.pid, signal.SIGTERM)
            try:
                child.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(child.proc.pid, signal.SIGKILL)
                child.proc.wait()
        # Whatever the group left behind (uvicorn workers, nginx workers): end it too.
        _signal_group(child.proc.pid, signal.SIGKILL)
        if child in self.children:
            self.children.remove(child)

    def stop_all(self, timeout: float = 10.0) -> None:
        """SIGTERM to every group at once (they shut down in parallel), then wait for each as
        ``stop`` does: SIGKILL for one still running after ``timeout`` and for what is left."""
        children = list(reversed(self.children))
        for child in children:
            if child.proc.poll() is None:
                _signal_group(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in children:
            try:
                try:
                    child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _signal_group(child.proc.pid, signal.SIGKILL)
                    child.proc.wait()
                _signal_group(child.proc.pid, signal.SIGKILL)
            except Exception as exc:
                log(f"could not stop {child.name}: {exc}")
            if child in self.children:
                self.children.remove(child)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def wait_http(url: str, child: Child, timeout: float = 60.0, ok: tuple[int, ...] = (200,)) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            tail = child.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{child.name} exited with {child.proc.returncode}:\n{tail}")
        try:
            if httpx.get(url, timeout=2.0).status_code in ok:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{child.name} did not answer {url} within {timeout:.0f} s")


# ---------------------------------------------------------------------------------------------
# memory


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/*/stat)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(parents.get(current, []))
    return found


def rss_mb(pid: int) -> float:
    """VmRSS summed over ``pid`` and its descendants, in MiB."""
    total_kb = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its descendants so far (from /proc/PID/stat)."""
    total = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / _TICKS


# ---------------------------------------------------------------------------------------------
# load generators


def run_wrk(
    url: str,
    script: Path,
    *,
    connections: int,
    duration: float,
    cpus: set[int] | None,
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    """One wrk run (one thread); the Lua script's ``done`` prints a WRK_JSON line."""
    seconds = max(1, round(duration))
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={timeout_s:.0f}s",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        timeout=seconds + 120,
    )
    for line in done.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            result: dict[str, Any] = json.loads(line[len("WRK_JSON ") :])
            elapsed = result["duration_us"] / 1e6
            errors = (
                result["connect_errors"]
                + result["read_errors"]
                + result["write_errors"]
                + result["status_errors"]
                + result["timeouts"]
            )
            result["errors"] = errors
            result["ok"] = result["requests"] - result["status_errors"]
            result["rps"] = result["ok"] / elapsed if elapsed else 0.0
            result["tool"] = "wrk"
            return result
    raise RuntimeError(f"wrk printed no result (exit {done.returncode}): {done.stderr[-2000:]}")


def wrk_script(name: str, body: bytes) -> Path:
    """A Lua script posting ``body`` with the bench client key; ``done`` prints JSON."""
    text = f"""-- generated by bench/harness.py
wrk.method = "POST"
wrk.body = [==[{body.decode()}]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {CLIENT_KEY}"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {{"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, '
    .. '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, '
    .. '"p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "mean_ms": %.3f}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.mean / 1000))
end
"""
    path = WORK / f"wrk-{name}.lua"
    path.write_text(text)
    return path


class LoadgenWorker:
    """One ``bench/loadgen.py serve`` process that runs every closed, open and ttft run sent to
    it, in turn (see :func:`use_loadgen_worker`)."""

    def __init__(self, procs: Processes, cpus: set[int] | None) -> None:
        WORK.mkdir(parents=True, exist_ok=True)
        log_path = WORK / "loadgen-worker.log"
        with log_path.open("ab") as err:
            proc = subprocess.Popen(
                [PYTHON, str(BENCH / "loadgen.py"), "serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=ROOT,
                start_new_session=True,
                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,  # noqa: PLW1509
            )
        self.child = Child("loadgen-worker", proc, log_path)
        procs.children.append(self.child)  # stop_all ends it

    def run(self, args: Sequence[str], timeout: float) -> dict[str, Any]:
        proc = self.child.proc
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(json.dumps(list(args)).encode() + b"\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else b""
        if not line.strip():
            tail = self.child.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"loadgen worker: no result for {args[0]} ({proc.poll()}): {tail}")
        result: dict[str, Any] = json.loads(line)
        return result


_worker: LoadgenWorker | None = None


def use_loadgen_worker(procs: Processes, cpus: set[int] | None) -> None:
    """From now on :func:`run_loadgen` sends its runs to one long-lived load generator instead
    of starting one per run (smoke mode: a process start is a large part of a 0.2 s run)."""
    global _worker  # noqa: PLW0603
    _worker = LoadgenWorker(procs, cpus)


def run_loadgen(args: Sequence[str], *, cpus: set[int] | None, timeout: float) -> dict[str, Any]:
    """Run bench/loadgen.py to completion; its JSON result."""
    if _worker is not None and args[0] != "hold":
        result = _worker.run(args, timeout)
        result["tool"] = "loadgen"
        return result
    done = subprocess.run(
        [PYTHON, str(BENCH / "loadgen.py"), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"loadgen {args[0]} failed ({done.returncode}): {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["tool"] = "loadgen"
    return result


# ---------------------------------------------------------------------------------------------
# the machine


def machine_info() -> dict[str, Any]:
    cpu_model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    versions: dict[str, str | None] = {}
    for dep in GATEWAY_DEPS:
        try:
            versions[dep] = metadata.version(dep)
        except metadata.PackageNotFoundError:
            versions[dep] = None
    try:
        versions["llm-flag-gateway"] = metadata.version("llm-flag-gateway")
    except metadata.PackageNotFoundError:
        versions["llm-flag-gateway"] = None
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "gateway_deps": versions,
        "wrk": _tool_version(["wrk", "-v"], r"wrk (\S+)"),
        "nginx": _tool_version([nginx_binary() or "nginx", "-v"], r"nginx/(\S+)"),
        "litellm": litellm_version(),
        "py_spy": _package_version("py-spy"),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _tool_version(cmd: list[str], pattern: str) -> str | None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(pattern, done.stdout + done.stderr)
    return found.group(1) if found else None


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
