"""Helpers of the mesh end-to-end tests (issue 4): peers through the config file and SIGHUP (or the
admin API once it is there), waiting for peer links, the meshpeer helper, echo runs."""

import json
import os
import re
import signal
import subprocess
import time

import harness
from harness import BIN


def meshpeer_bin():
    """meshpeer is built next to streamclient (tests/e2e/CMakeLists.txt)."""
    path = os.environ.get("MESHPEER") or os.path.join(os.path.dirname(BIN["streamclient"]),
                                                      "meshpeer")
    if not os.access(path, os.X_OK):
        raise AssertionError(f"meshpeer not built at {path}")
    return path


# secp256k1, only to derive a public key in tests: daemons can then start with their keys and
# their peers in the config file, as an operator writes it.
_P = 2**256 - 2**32 - 977
_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_G = (0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
      0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8)


def _point_add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0] and (a[1] + b[1]) % _P == 0:
        return None
    if a == b:
        lam = 3 * a[0] * a[0] * pow(2 * a[1], -1, _P) % _P
    else:
        lam = (b[1] - a[1]) * pow(b[0] - a[0], -1, _P) % _P
    x = (lam * lam - a[0] - b[0]) % _P
    return (x, (lam * (a[0] - x) - a[1]) % _P)


def pk_of(sk_hex):
    k, acc, pt = int(sk_hex, 16), None, _G
    while k:
        if k & 1:
            acc = _point_add(acc, pt)
        pt = _point_add(pt, pt)
        k >>= 1
    return ("02" if acc[1] % 2 == 0 else "03") + f"{acc[0]:064x}"


def new_sk():
    """A fresh secp256k1 secret key (uniform in [1, n-1])."""
    while True:
        k = int.from_bytes(os.urandom(32), "big")
        if 0 < k < _N:
            return f"{k:064x}"


def keyed_daemon(case_cls, name, log_level="info", extra=None):
    """A Daemon (not started) with a fixed key pair in its config; .sk/.pk are known at once."""
    sk = new_sk()
    cfg = {"public_key": pk_of(sk), "secret_key": sk, "log_level": log_level}
    if extra:
        cfg.update(extra)
    d = harness.Daemon(case_cls.workdir, extra=cfg, name=name)
    d.sk, d.pk = sk, cfg["public_key"]
    case_cls.daemons.append(d)
    return d


def start_with_peers(daemons_and_peers):
    """[(daemon, [peer daemons])]: writes each daemon's peers into its config, then starts them
    all (peers from the file: source "config")."""
    for d, peers in daemons_and_peers:
        with open(d.config_path) as f:
            cfg = json.load(f)
        cfg["peers"] = [peer_entry(p) for p in peers]
        with open(d.config_path, "w") as f:
            json.dump(cfg, f, indent=2)
    for d, _ in daemons_and_peers:
        d.start()


def secret_key_of(daemon):
    with open(os.path.join(daemon.dir, "state", "keys.json")) as f:
        return json.load(f)["secret_key"]


def count_lines(daemon, pattern):
    rx = re.compile(pattern)
    with daemon.proc._cond:
        return sum(1 for line in daemon.proc.lines if rx.search(line))


def wait_count(daemon, pattern, at_least, timeout):
    ok = harness.wait_until(lambda: count_lines(daemon, pattern) >= at_least, timeout, 0.05)
    if not ok:
        raise AssertionError(f"{daemon.name}: fewer than {at_least} lines matching {pattern!r} "
                             f"within {timeout} s; stderr tail:\n"
                             f"{daemon.proc.stderr_text()[-4000:]}")


def link_up_pattern(peer):
    return rf'msg="peer link up" peer={peer.pk}'


def set_config(daemon, **changes):
    """Rewrites keys of the daemon's config file and makes it reload (SIGHUP)."""
    with open(daemon.config_path) as f:
        cfg = json.load(f)
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    with open(daemon.config_path, "w") as f:
        json.dump(cfg, f, indent=2)
    n = count_lines(daemon, r'msg="configuration reloaded"')
    daemon.proc.signal(signal.SIGHUP)
    wait_count(daemon, r'msg="configuration reloaded"', n + 1, 10)


def peer_entry(peer, address=None):
    return {"public_key": peer.pk, "address": address or peer.addr}


def set_peers(daemon, peers):
    """peers: daemons, or (daemon, address) pairs for a deliberately wrong address."""
    entries = []
    for p in peers:
        if isinstance(p, tuple):
            entries.append({"public_key": p[0] if isinstance(p[0], str) else p[0].pk,
                            "address": p[1]})
        else:
            entries.append(peer_entry(p))
    set_config(daemon, peers=entries)


def link(a, b, timeout=15):
    """Waits until a's outbound link to b is up (at least once more than before is not implied:
    the first time only)."""
    wait_count(a, link_up_pattern(b), 1, timeout)


def echo_listener(children, server, port):
    proc, pk = harness.start_listener(children, port, server=server.server_ref,
                                      extra=["--echo", "--keep-open"], stdout=subprocess.DEVNULL)
    return proc, pk


def echo_run(server, dst_pk, port, streams=4, nbytes=256 << 10, timeout=40, window=None):
    """streamclient through server to an echo listener; returns its JSON result."""
    args = [BIN["streamclient"], "--server", server.server_ref, "--dst", f"{dst_pk}:{port}",
            "--streams", str(streams), "--bytes", str(nbytes), "--timeout", str(timeout)]
    if window:
        args += ["--dial-window", str(window)]
    code, res, err = harness.run_json(args, timeout + 10, "streamclient")
    return code, res, err


def meshpeer(args, timeout=20):
    """Runs meshpeer to its end; returns the JSON lines it printed."""
    p = harness.Proc([meshpeer_bin()] + args, "meshpeer", stdout=subprocess.PIPE)
    try:
        out, _ = p.p.communicate(timeout=timeout)
    finally:
        p.kill()
    lines = [json.loads(ln) for ln in out.decode(errors="replace").splitlines()
             if ln.startswith("{")]
    return lines, p.stderr_text(), p


def stream_log_lines(daemon):
    """The relay's per-stream debug lines (log_level debug): serving or refusing a stream."""
    return count_lines(daemon, r'msg="(serving stream|stream refused)"')


def timed(fn):
    t0 = time.monotonic()
    r = fn()
    return r, time.monotonic() - t0


# ------------------------------------------------------------------------------------------------
# The admin API on the daemon's Unix socket (<state_dir>/admin.sock; no token on the socket)

class _UnixHTTPConnection(__import__("http.client").client.HTTPConnection):
    def __init__(self, path, timeout=5):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        import socket
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def admin_socket(daemon):
    return os.path.join(daemon.dir, "state", "admin.sock")


def admin_available(daemon):
    return os.path.exists(admin_socket(daemon))


def admin(daemon, method, path, body=None):
    """One admin API request; returns (status, parsed JSON body or None)."""
    conn = _UnixHTTPConnection(admin_socket(daemon))
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        raw = r.read()
        return r.status, (json.loads(raw) if raw.strip() else None)
    finally:
        conn.close()
