"""Shared helpers for the end-to-end tests: real dmsgd, dmsgcat and helper-client processes on
127.0.0.1, bounded in time, always cleaned up.

Every child process is started with PR_SET_PDEATHSIG, so that it dies with the test even when
ctest kills the test on its timeout; every test also runs under an alarm of its own. Temporary
directories are removed when the test ends. Python 3 standard library only.
"""

import argparse
import contextlib
import ctypes
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

# ------------------------------------------------------------------------------------------------
# Command line: the binaries under test (set by tests/e2e/CMakeLists.txt)

BIN = {}


def parse_binaries(argv):
    """Takes --dmsgd/--dmsgcat/--badclient/--streamclient (or $DMSGD etc.); returns the rest."""
    p = argparse.ArgumentParser(add_help=False)
    for name in ("dmsgd", "dmsgcat", "badclient", "streamclient"):
        p.add_argument("--" + name, default=os.environ.get(name.upper()))
    known, rest = p.parse_known_args(argv[1:])
    for name, path in vars(known).items():
        if not path or not os.access(path, os.X_OK):
            sys.exit(f"{argv[0]}: --{name} PATH (or ${name.upper()}) must name the built binary")
        BIN[name] = path
    return [argv[0]] + rest


def main(budget_s):
    """Runs the unittest cases of the calling module under an overall alarm of budget_s."""
    argv = parse_binaries(sys.argv)

    def on_alarm(signum, frame):
        # First the running test fails (its finally blocks and cleanups run); if the rest still
        # does not finish within 15 s, everything is killed.
        signal.signal(signal.SIGALRM, lambda s, f: _emergency_exit("over budget"))
        signal.alarm(15)
        raise TimeoutError(f"the test file ran over its budget of {budget_s} s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(budget_s)
    # ctest's timeout or a user's ^C: kill the children and remove the temp dirs at once.
    signal.signal(signal.SIGTERM, lambda s, f: _emergency_exit("SIGTERM"))
    signal.signal(signal.SIGINT, lambda s, f: _emergency_exit("SIGINT"))
    started = time.monotonic()
    prog = unittest.main(argv=argv, exit=False, verbosity=2)
    signal.alarm(0)
    print(f"e2e: {os.path.basename(argv[0])} took {time.monotonic() - started:.1f} s", flush=True)
    sys.exit(0 if prog.result.wasSuccessful() else 1)


_LIVE_PROCS = []    # every child started, for _emergency_exit
_WORKDIRS = []


def _emergency_exit(why):
    print(f"e2e: {why}: killing children", file=sys.stderr, flush=True)
    for p in _LIVE_PROCS:
        with contextlib.suppress(Exception):
            p.kill()
    for d in _WORKDIRS:
        shutil.rmtree(d, ignore_errors=True)
    os._exit(1)


# ------------------------------------------------------------------------------------------------
# Processes

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent():
    # Note: the signal fires when the *thread* that started the child ends, so start children
    # from the main thread (or from threads that outlive them).
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def sanitizer_env(extra=None):
    """The environment for a child: leak checks on, and a small ASan quarantine, so that RSS
    figures show the program's memory rather than freed blocks ASan holds on to."""
    env = dict(os.environ)
    asan = env.get("ASAN_OPTIONS", "")
    ours = "detect_leaks=1:quarantine_size_mb=4:malloc_context_size=8"
    env["ASAN_OPTIONS"] = f"{asan}:{ours}" if asan else ours
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    if extra:
        env.update(extra)
    return env


SANITIZER_REPORT = re.compile(r"ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:|"
                              r"SUMMARY: \w+Sanitizer")


class Proc:
    """A child process with its stderr collected line by line (and stdout when not piped to
    the caller)."""

    def __init__(self, args, name, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                 env=None, cwd=None):
        self.name = name
        self.args = args
        self.lines = []
        self._cond = threading.Condition()
        self.p = subprocess.Popen(args, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                                  env=env or sanitizer_env(), cwd=cwd,
                                  preexec_fn=_die_with_parent)
        _LIVE_PROCS.append(self.p)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self):
        for raw in self.p.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self):
        return self.p.pid

    def stderr_text(self):
        with self._cond:
            return "\n".join(self.lines)

    def wait_line(self, pattern, timeout):
        """Waits for a stderr line matching pattern; returns the match or raises."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    m = rx.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.p.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"{self.name}: no line matching {pattern!r} within "
                                         f"{timeout} s; stderr:\n{self.stderr_text_unlocked()}")
                self._cond.wait(min(left, 0.2))

    def stderr_text_unlocked(self):
        return "\n".join(self.lines[-40:])

    def wait(self, timeout):
        """Waits for the exit; returns the code or raises AssertionError at the timeout."""
        try:
            code = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout} s") from None
        self._reader.join(5)
        return code

    def running(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.running():
            self.p.send_signal(sig)

    def kill(self):
        """Ends the process now (SIGKILL) and reaps it; safe to call twice."""
        if self.p.poll() is None:
            self.p.kill()
        with contextlib.suppress(Exception):
            self.p.wait(10)
        for f in (self.p.stdin, self.p.stdout):
            if f is not None:
                with contextlib.suppress(Exception):
                    f.close()
        self._reader.join(5)
        if not self._reader.is_alive():
            with contextlib.suppress(Exception):
                self.p.stderr.close()

    def assert_no_sanitizer_report(self, testcase):
        text = self.stderr_text()
        m = SANITIZER_REPORT.search(text)
        testcase.assertIsNone(m, f"{self.name} reported a sanitizer error:\n{text[-6000:]}")


class Children:
    """Tracks every process a test starts and kills the ones still alive at the end."""

    def __init__(self):
        self.procs = []

    def add(self, proc):
        self.procs.append(proc)
        return proc

    def kill_all(self):
        for p in reversed(self.procs):
            p.kill()
        self.procs.clear()


# ------------------------------------------------------------------------------------------------
# /proc readings

def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def established_tcp(port):
    """Established TCP connections whose local port is port (both directions of loopback)."""
    n = 0
    hexport = f"{port:04X}"
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(path) as f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[1].endswith(":" + hexport) and cols[3] == "01":
                    n += 1
    return n


def wait_until(predicate, timeout, interval=0.05):
    """Polls predicate until true; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# ------------------------------------------------------------------------------------------------
# Network helpers

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def can_connect(port):
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def http_get_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


# ------------------------------------------------------------------------------------------------
# The daemon

class Daemon:
    """dmsgd on free loopback ports with its embedded discovery and a private state dir."""

    def __init__(self, workdir, limits=None, extra=None, name="dmsgd"):
        self.name = name
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        self.port = free_port()
        self.disc_port = free_port()
        cfg = {
            "local_address": f"127.0.0.1:{self.port}",
            "embedded_discovery_address": f"127.0.0.1:{self.disc_port}",
            "state_dir": os.path.join(self.dir, "state"),
            "log_level": "info",
        }
        if limits:
            cfg["limits"] = limits
        if extra:
            cfg.update(extra)
        self.config_path = os.path.join(self.dir, "config.json")
        with open(self.config_path, "w") as f:
            json.dump(cfg, f, indent=2)
        self.proc = None
        self.pk = None

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    @property
    def server_ref(self):
        return f"{self.pk}@{self.addr}"

    @property
    def discovery_url(self):
        return f"http://127.0.0.1:{self.disc_port}"

    @property
    def pid(self):
        return self.proc.pid

    def start(self, timeout=20):
        stdout_path = os.path.join(self.dir, "stdout.txt")
        self._stdout = open(stdout_path, "wb")
        self.proc = Proc([BIN["dmsgd"], "-c", self.config_path], self.name,
                         stdout=self._stdout)
        deadline = time.monotonic() + timeout

        def banner():
            with open(stdout_path) as f:
                m = re.search(r"public key:\s+([0-9a-f]{66})", f.read())
            return m.group(1) if m else None

        self.pk = wait_until(banner, timeout)
        if not self.pk:
            self.proc.kill()
            raise AssertionError(f"dmsgd printed no public key; stderr:\n"
                                 f"{self.proc.stderr_text()}")
        if not wait_until(lambda: can_connect(self.port) and can_connect(self.disc_port),
                          max(0.1, deadline - time.monotonic())):
            self.proc.kill()
            raise AssertionError(f"dmsgd does not listen; stderr:\n{self.proc.stderr_text()}")
        return self

    def wait_registered(self, timeout=15):
        """Waits until the embedded discovery lists this server as available."""
        def listed():
            with contextlib.suppress(Exception):
                entries = http_get_json(self.discovery_url + "/dmsg-discovery/available_servers")
                return any(e.get("static") == self.pk for e in entries)
            return False
        if not wait_until(listed, timeout, 0.1):
            raise AssertionError("the server never appeared in its embedded discovery")

    def fds(self):
        return fd_count(self.pid)

    def rss(self):
        return rss_kib(self.pid)

    def cpu(self):
        return cpu_seconds(self.pid)

    def sessions(self):
        return established_tcp(self.port)

    def stop(self, testcase, timeout=20):
        """SIGTERM; the daemon must exit 0 within timeout with no sanitizer report."""
        if self.proc is None:
            return
        self.proc.signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        finally:
            self.proc.kill()
            self._stdout.close()
        self.proc.assert_no_sanitizer_report(testcase)
        testcase.assertEqual(code, 0, f"dmsgd exited {code} after SIGTERM; stderr tail:\n"
                             f"{self.proc.stderr_text()[-4000:]}")

    def kill(self):
        if self.proc is not None:
            self.proc.kill()
            with contextlib.suppress(Exception):
                self._stdout.close()


# ------------------------------------------------------------------------------------------------
# dmsgcat and the helper clients

def cat_args(server=None, discovery=None):
    args = [BIN["dmsgcat"]]
    if server:
        args += ["--server", server]
    if discovery:
        args += ["--discovery", discovery]
    return args


def start_listener(children, port, server=None, discovery=None, extra=(), sk=None, name=None,
                   stdout=subprocess.PIPE, stdin=subprocess.DEVNULL):
    """dmsgcat listen PORT; returns (proc, pk) once it said ready."""
    args = cat_args(server, discovery) + list(extra)
    if sk:
        args += ["--sk", sk]
    p = children.add(Proc(args + ["listen", str(port)], name or f"listener:{port}",
                          stdin=stdin, stdout=stdout))
    pk = p.wait_line(r"pk=([0-9a-f]{66})", 15).group(1)
    p.wait_line(r"dmsgcat: ready", 30)
    return p, pk


def start_dialer(children, target, server=None, discovery=None, extra=(), name=None,
                 stdin=subprocess.PIPE, stdout=subprocess.PIPE):
    args = cat_args(server, discovery) + list(extra) + ["dial", target]
    return children.add(Proc(args, name or f"dialer:{target[-8:]}", stdin=stdin, stdout=stdout))


def run_json(args, timeout, name):
    """Runs a helper client to its end; returns (exit code, parsed last JSON line, stderr)."""
    p = Proc(args, name, stdout=subprocess.PIPE)
    chunks = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(p.p.stdout.readline, b"")),
                              daemon=True)
    reader.start()
    try:
        code = p.wait(timeout)
        reader.join(5)
    finally:
        p.kill()
    lines = [ln for ln in b"".join(chunks).decode(errors="replace").splitlines()
             if ln.startswith("{")]
    result = json.loads(lines[-1]) if lines else None
    return code, result, p.stderr_text()


# ------------------------------------------------------------------------------------------------
# Data pumps (threads): random bytes in, SHA-256 on both sides

class Pump(threading.Thread):
    """Writes total random bytes to a pipe (then closes it unless keep_open), hashing them."""

    def __init__(self, pipe, total, chunk=1 << 20, keep_open=False):
        super().__init__(daemon=True)
        self.pipe, self.total, self.chunk, self.keep_open = pipe, total, chunk, keep_open
        self.sha = hashlib.sha256()
        self.written = 0
        self.error = None

    def run(self):
        fd = self.pipe.fileno()
        try:
            while self.written < self.total:
                block = os.urandom(min(self.chunk, self.total - self.written))
                self.sha.update(block)
                view = memoryview(block)
                while view:
                    # Small writes keep self.written accurate while the reader is stalled.
                    n = os.write(fd, view[:1 << 16])
                    view = view[n:]
                    self.written += n
        except OSError as e:
            self.error = e
        finally:
            if not self.keep_open:
                with contextlib.suppress(OSError):
                    self.pipe.close()


class Drain(threading.Thread):
    """Reads a pipe to EOF, hashing; optionally paced to rate bytes/s while self.slow is set."""

    def __init__(self, pipe, limit=None):
        super().__init__(daemon=True)
        self.pipe = pipe
        self.sha = hashlib.sha256()
        self.read = 0
        self.limit = limit
        self.slow_rate = None  # bytes per second while set
        self.error = None

    def run(self):
        fd = self.pipe.fileno()
        try:
            while True:
                rate = self.slow_rate
                if rate:
                    n = max(1, rate // 20)
                    block = os.read(fd, n)
                    time.sleep(0.05)
                else:
                    block = os.read(fd, 1 << 20)
                if not block:
                    break
                self.sha.update(block)
                self.read += len(block)
                if self.limit is not None and self.read >= self.limit:
                    break
        except OSError as e:
            self.error = e


# ------------------------------------------------------------------------------------------------
# Test case base: a work dir and child tracking per test class

class E2ECase(unittest.TestCase):
    """Creates cls.workdir and cls.children; subclasses start what they need in setUpClass
    (after calling super) and the base removes everything in tearDownClass."""

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="dmsg-e2e-")
        _WORKDIRS.append(cls.workdir)
        cls.children = Children()
        cls.daemons = []
        # A class cleanup runs even when the subclass's setUpClass fails half-way.
        cls.addClassCleanup(cls._cleanup)

    @classmethod
    def _cleanup(cls):
        cls.children.kill_all()
        for d in cls.daemons:
            d.kill()
        shutil.rmtree(cls.workdir, ignore_errors=True)

    @classmethod
    def start_daemon(cls, **kw):
        d = Daemon(cls.workdir, **kw)
        cls.daemons.append(d)
        return d.start()

    def log(self, text):
        print(f"    {self.id().rsplit('.', 1)[-1]}: {text}", flush=True)
