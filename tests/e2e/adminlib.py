"""Helpers of the admin API end-to-end tests (issue 5): daemons with the admin API on, the
dmsgctl binary, raw HTTP over the admin unix socket or TCP listener, and a live event follower.
Python 3 standard library only (prometheus_client is Debian's python3-prometheus-client)."""

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

import harness
import meshlib
from harness import BIN


def dmsgctl_bin():
    """$DMSGCTL (tests/e2e/CMakeLists.txt sets it), else ctl/dmsgctl of the same build tree."""
    path = os.environ.get("DMSGCTL") or os.path.join(
        os.path.dirname(os.path.dirname(BIN["dmsgd"])), "ctl", "dmsgctl")
    if not os.access(path, os.X_OK):
        raise AssertionError(f"dmsgctl not built at {path}")
    return path


def prometheus_parser():
    """text_string_to_metric_families from python3-prometheus-client (installed by
    deploy/install-deps.sh), also when the interpreter running the test is not Debian's."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        sys.path.append("/usr/lib/python3/dist-packages")
        from prometheus_client.parser import text_string_to_metric_families
    return text_string_to_metric_families


def admin_daemon(case_cls, name, tcp=False, limits=None, extra=None):
    """A keyed daemon whose metrics are sampled every second; with tcp, an admin TCP listener."""
    cfg = dict(extra or {})
    lim = {"metrics_sample_interval_ms": 1000}
    lim.update(limits or {})
    cfg["limits"] = lim
    if tcp:
        cfg["admin_address"] = f"127.0.0.1:{harness.free_port()}"
    d = meshlib.keyed_daemon(case_cls, name, extra=cfg)
    d.admin_port = int(cfg["admin_address"].rsplit(":", 1)[1]) if tcp else None
    return d


def socket_path(daemon):
    return os.path.join(daemon.dir, "state", "admin.sock")


def token(daemon, readonly=False):
    name = "admin-readonly.token" if readonly else "admin.token"
    with open(os.path.join(daemon.dir, "state", name)) as f:
        return f.read().strip()


def wait_admin(daemon, timeout=10):
    if not harness.wait_until(lambda: os.path.exists(socket_path(daemon)), timeout):
        raise AssertionError(f"{daemon.name}: no admin socket; stderr:\n"
                             f"{daemon.proc.stderr_text()[-3000:]}")


# ------------------------------------------------------------------------------------------------
# Raw HTTP

class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class Answer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body.decode())

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


def _request(conn, method, path, body=None, headers=None):
    hdrs = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        body = body.encode()
    try:
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        return Answer(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


def unix_request(daemon, method, path, body=None, headers=None, timeout=15):
    return _request(_UnixConnection(socket_path(daemon), timeout), method, path, body, headers)


def raw_unix_request(daemon, data, timeout=15):
    """Sends raw bytes on the admin socket and parses the one answer that comes back."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(socket_path(daemon))
    try:
        # The daemon may answer (413) and stop reading before all of data went out.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
        r = http.client.HTTPResponse(s)
        r.begin()
        return Answer(r.status, r.getheaders(), r.read())
    finally:
        s.close()


def tcp_request(daemon, method, path, body=None, headers=None, timeout=15):
    conn = http.client.HTTPConnection("127.0.0.1", daemon.admin_port, timeout=timeout)
    return _request(conn, method, path, body, headers)


def assert_problem(case, answer, status, code, field=None):
    """The answer is an application/problem+json of that status and machine code."""
    case.assertEqual(answer.status, status, answer)
    case.assertTrue((answer.header("Content-Type") or "").startswith("application/problem+json"),
                    answer.headers)
    p = answer.json()
    case.assertEqual(p["code"], code, p)
    case.assertEqual(p["status"], status, p)
    case.assertEqual(p["type"], "urn:dmsgd:problem:" + code)
    case.assertTrue(p["title"] and p["detail"], p)
    if field is not None:
        case.assertEqual(p.get("field"), field, p)
    return p


# ------------------------------------------------------------------------------------------------
# dmsgctl

def ctl(daemon, *args, timeout=30, json_out=False):
    """Runs dmsgctl -c <daemon's config> ARGS; returns (exit code, stdout text, stderr text)."""
    # A loaded machine (ASan, 50 parallel clients) may take longer than dmsgctl's default 10 s.
    argv = [dmsgctl_bin(), "-c", daemon.config_path, "--timeout", "60"]
    if json_out:
        argv.append("--json")
    argv += list(args)
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                       env=harness.sanitizer_env())
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def ctl_ok(case, daemon, *args, **kw):
    code, out, err = ctl(daemon, *args, **kw)
    case.assertEqual(code, 0, f"dmsgctl {' '.join(args)} exited {code}:\n{err}\n{out}")
    return out


def ctl_json(case, daemon, *args, **kw):
    return json.loads(ctl_ok(case, daemon, *args, json_out=True, **kw))


class EventFollower:
    """dmsgctl --json events --follow in the background; collects the events it prints."""

    def __init__(self, children, daemon, types=None):
        args = [dmsgctl_bin(), "-c", daemon.config_path, "--json", "events", "--follow"]
        if types:
            args += ["--type", types]
        self.proc = children.add(harness.Proc(args, "events", stdout=subprocess.PIPE))
        self.events = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.proc.p.stdout:
            line = raw.decode(errors="replace").strip()
            if not line.startswith("{"):
                continue
            with contextlib.suppress(ValueError), self._cond:
                self.events.append(json.loads(line))
                self._cond.notify_all()

    def wait(self, predicate, timeout, what="an event"):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self.events:
                    if predicate(ev):
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {what} within {timeout} s; events: "
                                         f"{self.events[-20:]}; stderr: "
                                         f"{self.proc.stderr_text()[-2000:]}")
                self._cond.wait(min(left, 0.2))

    def wait_connected(self, daemon, timeout=10):
        """Until the daemon counts this subscriber (its feed is open)."""
        def subscribed():
            m = metrics(daemon)
            return m is not None
        harness.wait_until(subscribed, timeout)
        time.sleep(0.3)

    def stop(self):
        self.proc.kill()


# ------------------------------------------------------------------------------------------------
# Metrics

def metrics_text(daemon):
    a = unix_request(daemon, "GET", "/metrics")
    if a.status != 200:
        raise AssertionError(f"/metrics: {a}")
    return a.body.decode()


def metrics(daemon):
    """{(sample name, frozenset(labels)): value} parsed with prometheus_client."""
    parse = prometheus_parser()
    out = {}
    for fam in parse(metrics_text(daemon)):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def metric(m, name, **labels):
    return m.get((name, frozenset(labels.items())), 0.0)
