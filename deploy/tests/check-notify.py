#!/usr/bin/env python3
"""dmsgd speaks systemd's notify protocol (the unit's Type=notify depends on it).

    check-notify.py DMSGD

Plays the service manager: a datagram socket in $NOTIFY_SOCKET, then dmsgd on loopback with
free ports. dmsgd must send READY=1 once it listens (from its own pid: NotifyAccess=main), a
STATUS after SIGHUP, STOPPING=1 after SIGTERM, and then exit 0.
"""
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time


def fail(message, proc=None):
    print(f"check-notify: {message}", file=sys.stderr)
    if proc is not None:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate(timeout=10)
        sys.stderr.write(out[-2000:] + err[-4000:])
    sys.exit(1)


def receive(sock, wanted, seconds, proc):
    """Datagrams until one holds the line `wanted`; returns (fields, sender pid)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            continue
        sender = None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                sender = struct.unpack("iII", payload[:12])[0]
        lines = data.decode("utf-8", "replace").split("\n")
        print(f"check-notify: received {lines!r} from pid {sender}")
        if wanted in lines:
            return lines, sender
    fail(f"no {wanted!r} within {seconds} s: does dmsgd call the functions of "
         "daemon/sd_notify.h (ready after start, reloaded after SIGHUP, stopping)?", proc)


def main():
    if len(sys.argv) != 2:
        print("usage: check-notify.py DMSGD", file=sys.stderr)
        sys.exit(2)
    dmsgd = sys.argv[1]
    with tempfile.TemporaryDirectory(prefix="dmsgd-notify.") as tmp:
        path = os.path.join(tmp, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sock.bind(path)
        config = os.path.join(tmp, "config.json")
        with open(config, "w") as f:
            f.write('{"local_address": "127.0.0.1:0", "embedded_discovery_address": '
                    '"127.0.0.1:0", "state_dir": "state"}\n')
        env = dict(os.environ, NOTIFY_SOCKET=path)
        proc = subprocess.Popen([dmsgd, "-c", config], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lines, sender = receive(sock, "READY=1", 20, proc)
        if sender is not None and sender != proc.pid:
            fail(f"READY=1 came from pid {sender}, not dmsgd's {proc.pid}", proc)
        if not any(line.startswith("STATUS=") for line in lines):
            fail("READY=1 came without a STATUS line", proc)

        proc.send_signal(signal.SIGHUP)
        receive(sock, "STATUS=configuration reloaded", 10, proc)

        proc.send_signal(signal.SIGTERM)
        receive(sock, "STOPPING=1", 10, proc)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            fail("dmsgd did not exit within 30 s of SIGTERM", proc)
        if proc.returncode != 0:
            sys.stderr.write(err[-4000:])
            fail(f"dmsgd exited with status {proc.returncode} after SIGTERM")
    print("check-notify: READY=1, reload STATUS and STOPPING=1 all arrived; clean exit")


if __name__ == "__main__":
    main()
