"""dmsgd with no configuration at all: the embedded default. It generates its keys once in its
state directory, serves sessions on 127.0.0.1:8081 and its embedded discovery on
127.0.0.1:9090, and is a whole private network: two dmsgcat clients that know only the
discovery URL exchange data through it. A restart keeps the same key.

Needs the two default ports; the test is skipped (exit 77) when something else holds them."""

import os
import re
import signal
import subprocess
import sys

import harness
from harness import Drain, E2ECase, Pump

PORT, DISC_PORT = 8081, 9090
DATA = 16 << 20


class EmbeddedDefault(E2ECase):
    def start_default(self):
        state = os.path.join(self.workdir, "state")
        env = harness.sanitizer_env({"STATE_DIRECTORY": state, "HOME": self.workdir})
        out_path = os.path.join(self.workdir, f"stdout{len(self.children.procs)}.txt")
        out = open(out_path, "wb")
        self.addCleanup(out.close)
        proc = self.children.add(harness.Proc([harness.BIN["dmsgd"]], "dmsgd-default",
                                              stdout=out, env=env))

        def banner():
            with open(out_path) as f:
                text = f.read()
            return text if "discovery:" in text else None

        text = harness.wait_until(banner, 20)
        self.assertTrue(text, f"no banner; stderr:\n{proc.stderr_text()}")
        pk = re.search(r"public key:\s+([0-9a-f]{66})", text).group(1)
        self.assertRegex(text, rf"listening on:\s+127\.0\.0\.1:{PORT}")
        self.assertRegex(text, rf"discovery:\s+http://127\.0\.0\.1:{DISC_PORT} \(embedded\)")
        self.assertTrue(os.path.exists(os.path.join(state, "keys.json")))
        self.assertTrue(harness.wait_until(lambda: harness.can_connect(PORT) and
                                           harness.can_connect(DISC_PORT), 10))
        return proc, pk

    def stop(self, proc):
        proc.signal(signal.SIGTERM)
        self.assertEqual(proc.wait(20), 0, proc.stderr_text()[-3000:])
        proc.assert_no_sanitizer_report(self)

    def test_private_network_out_of_the_box(self):
        proc, pk = self.start_default()
        url = f"http://127.0.0.1:{DISC_PORT}"

        def registered():
            servers = harness.http_get_json(url + "/dmsg-discovery/available_servers")
            return any(s["static"] == pk for s in servers)
        self.assertTrue(harness.wait_until(registered, 15, 0.1))
        listener, lpk = harness.start_listener(self.children, 3, discovery=url,
                                               extra=["--no-stdin"])
        dialer = harness.start_dialer(self.children, f"{lpk}:3", discovery=url,
                                      stdout=subprocess.DEVNULL)
        drain, pump = Drain(listener.p.stdout), Pump(dialer.p.stdin, DATA)
        drain.start()
        pump.start()
        pump.join(60)
        drain.join(60)
        self.assertEqual(drain.read, DATA)
        self.assertEqual(drain.sha.hexdigest(), pump.sha.hexdigest())
        self.assertEqual(dialer.wait(15), 0, dialer.stderr_text())
        self.assertEqual(listener.wait(15), 0, listener.stderr_text())
        self.stop(proc)

        # The key pair lives in the state directory: a restart is the same server.
        proc2, pk2 = self.start_default()
        self.assertEqual(pk2, pk)
        self.stop(proc2)


if __name__ == "__main__":
    if not (harness.port_is_free(PORT) and harness.port_is_free(DISC_PORT)):
        print(f"skipped: 127.0.0.1:{PORT} or :{DISC_PORT} is in use")
        sys.exit(77)
    harness.main(budget_s=60)
