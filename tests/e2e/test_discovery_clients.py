"""The same client side, but every client finds the server only through the discovery HTTP API
(dmsgd's embedded discovery reached over HTTP, which speaks the reference API): the listeners
post their signed client entries, the dialers look them up and pick the server from
available_servers, data flows with checksums equal, and entries go away when clients close."""

import json
import signal
import subprocess
import urllib.error
import urllib.request

import harness
from harness import Drain, E2ECase, Pump

ONE_STREAM = 64 << 20
STREAMS = 100
STREAM_BYTES = 256 << 10


class DiscoveryClients(E2ECase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.d = cls.start_daemon()
        cls.d.wait_registered()
        cls.base_fds = cls.d.fds()

    def entry(self, pk):
        """The discovery's entry for pk, or None on 404."""
        try:
            return harness.http_get_json(f"{self.d.discovery_url}/dmsg-discovery/entry/{pk}")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def assert_client_entry(self, pk):
        e = self.entry(pk)
        self.assertIsNotNone(e, f"no entry for {pk}")
        self.assertEqual(e["static"], pk)
        self.assertIn(self.d.pk, e["client"]["delegated_servers"], json.dumps(e))

    def test_1_server_entry(self):
        e = self.entry(self.d.pk)
        self.assertEqual(e["server"]["address"], self.d.addr)
        servers = harness.http_get_json(
            f"{self.d.discovery_url}/dmsg-discovery/available_servers")
        self.assertIn(self.d.pk, [s["static"] for s in servers])

    def test_2_one_stream(self):
        url = self.d.discovery_url
        listener, lpk = harness.start_listener(self.children, 5, discovery=url,
                                               extra=["--no-stdin"])
        self.assert_client_entry(lpk)
        dialer = harness.start_dialer(self.children, f"{lpk}:5", discovery=url,
                                      stdout=subprocess.DEVNULL)
        drain, pump = Drain(listener.p.stdout), Pump(dialer.p.stdin, ONE_STREAM)
        drain.start()
        pump.start()
        pump.join(60)
        drain.join(60)
        self.assertFalse(pump.is_alive() or drain.is_alive(), "transfer did not finish")
        self.assertEqual(drain.read, ONE_STREAM)
        self.assertEqual(drain.sha.hexdigest(), pump.sha.hexdigest())
        self.assertEqual(dialer.wait(15), 0, dialer.stderr_text())
        self.assertEqual(listener.wait(15), 0, listener.stderr_text())
        # Closing clients delete their entries (DELETE /dmsg-discovery/entry).
        gone = harness.wait_until(lambda: self.entry(lpk) is None, 5)
        self.assertTrue(gone, "the listener's entry outlived it")

    def test_3_hundred_streams(self):
        url = self.d.discovery_url
        echo, epk = harness.start_listener(self.children, 7, discovery=url,
                                           extra=["--echo", "--keep-open"],
                                           stdout=subprocess.DEVNULL, name="echo")
        self.assert_client_entry(epk)
        code, res, err = harness.run_json(
            [harness.BIN["streamclient"], "--discovery", url, "--dst", f"{epk}:7",
             "--streams", str(STREAMS), "--bytes", str(STREAM_BYTES), "--dial-window", "48",
             "--timeout", "60"], 70, "streamclient")
        self.log(f"{res}")
        self.assertEqual(code, 0, f"{res}\n{err[-3000:]}")
        self.assertEqual(res["max_open"], STREAMS)
        echo.signal(signal.SIGTERM)
        self.assertIn(echo.wait(15), (0, 130))
        echo.assert_no_sanitizer_report(self)

    def test_4_clean_exit(self):
        d = self.d
        ok = harness.wait_until(lambda: d.sessions() == 0 and d.fds() <= self.base_fds, 10)
        self.assertTrue(ok, f"{d.sessions()} sessions, {d.fds()} fds left")
        d.stop(self)


if __name__ == "__main__":
    harness.main(budget_s=120)
