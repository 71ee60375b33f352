"""Operating a running dmsgd only through dmsgctl (issue 5): add a peer and see its link come up,
remove it, toggle route setup, watch sessions appear and vanish live, kick one, read metrics that
move with traffic (parsed with prometheus_client), and stored statistics."""

import subprocess
import time

import adminlib
import harness
import meshlib
from adminlib import ctl, ctl_json, ctl_ok, metric
from harness import E2ECase, Pump, Drain

PORT = 7


class Operate(E2ECase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.a = adminlib.admin_daemon(cls, "A")
        cls.b = meshlib.keyed_daemon(cls, "B")
        cls.a.start()
        cls.b.start()
        adminlib.wait_admin(cls.a)

    @classmethod
    def tearDownClass(cls):
        cls.children.kill_all()
        super().tearDownClass()

    def test_1_info_and_health(self):
        info = ctl_json(self, self.a, "info")
        self.assertEqual(info["public_key"], self.a.pk)
        self.assertEqual(info["addresses"]["local"], self.a.addr)
        self.assertEqual(info["addresses"]["admin_socket"], adminlib.socket_path(self.a))
        self.assertGreaterEqual(info["schema_version"], 2)
        self.assertEqual(info["pid"], self.a.pid)
        health = ctl_json(self, self.a, "health")
        self.assertEqual(health["status"], "ok")
        self.assertEqual(health["store"], "ok")
        out = ctl_ok(self, self.a, "info")
        self.assertIn(self.a.pk, out)

    def test_2_peer_link_comes_up_and_goes(self):
        a, b = self.a, self.b
        events = adminlib.EventFollower(self.children, a, "peer_link")
        events.wait_connected(a)
        ctl_ok(self, a, "peer", "add", b.pk, b.addr, "--note", "second relay")
        ev = events.wait(lambda e: e["public_key"] == b.pk and e["state"] == "up", 20,
                         "peer_link up")
        self.assertEqual(ev["address"], b.addr)
        self.assertEqual(ev["type"], "peer_link")
        peer = ctl_json(self, a, "peer", "show", b.pk)
        self.assertEqual(peer["link"]["state"], "up")
        self.assertEqual(peer["source"], "admin")
        self.assertEqual(peer["note"], "second relay")
        self.assertIsNotNone(peer["link"]["remote_address"])
        listing = ctl_json(self, a, "peer", "ls")
        self.assertEqual([p["public_key"] for p in listing["peers"]], [b.pk])
        mesh = ctl_json(self, a, "mesh")
        self.assertEqual(mesh["public_key"], a.pk)
        self.assertEqual(mesh["peers"][0]["link"]["state"], "up")
        dot = ctl_ok(self, a, "mesh", "--dot")
        self.assertIn("digraph", dot)
        m = adminlib.metrics(a)
        self.assertEqual(metric(m, "dmsgd_peer_up", peer=b.pk), 1.0)
        # Adding it again is refused by the daemon (exit 1), with what to do.
        code, out, err = ctl(a, "peer", "add", b.pk, b.addr)
        self.assertEqual(code, 1, err)
        ctl_ok(self, a, "peer", "rm", b.pk)
        events.wait(lambda e: e["public_key"] == b.pk and e["state"] == "removed", 10,
                    "peer_link removed")
        self.assertEqual(ctl_json(self, a, "peer", "ls")["peers"], [])
        code, out, err = ctl(a, "peer", "show", b.pk)
        self.assertEqual(code, 1, out)
        self.assertNotIn(("dmsgd_peer_up", frozenset({("peer", b.pk)})), adminlib.metrics(a))
        events.stop()

    def test_3_route_setup_toggle(self):
        a = self.a
        first = ctl_json(self, a, "route-setup", "status")
        self.assertEqual(first["source"], "config")
        self.assertFalse(first["enabled"])
        self.assertIsNone(first["updated_at"])
        ctl_ok(self, a, "route-setup", "on")
        st = ctl_json(self, a, "route-setup", "status")
        self.assertEqual((st["enabled"], st["source"], st["configured"]), (True, "runtime", False))
        self.assertTrue(ctl_json(self, a, "health")["route_setup"])
        ctl_ok(self, a, "route-setup", "off")
        self.assertFalse(ctl_json(self, a, "route-setup", "status")["enabled"])
        code, _, err = ctl(a, "route-setup", "maybe")
        self.assertEqual(code, 2, err)

    def test_4_sessions_appear_and_vanish_live(self):
        a = self.a
        events = adminlib.EventFollower(self.children, a, "session_up,session_down")
        events.wait_connected(a)
        listener, pk = harness.start_listener(self.children, PORT, server=a.server_ref,
                                              extra=["--no-stdin"], stdout=subprocess.DEVNULL)
        up = events.wait(lambda e: e["type"] == "session_up" and e["public_key"] == pk, 15,
                         "session_up")
        self.assertEqual(up["kind"], "client")
        sessions = ctl_json(self, a, "sessions")
        self.assertIn(pk, [s["public_key"] for s in sessions["sessions"]])
        one = ctl_json(self, a, "session", pk)
        self.assertEqual(one["session"]["public_key"], pk)
        self.assertEqual(one["session"]["kind"], "client")
        self.assertGreater(one["session"]["rx_bytes"], 0)
        plain = ctl_ok(self, a, "--plain", "sessions")
        self.assertIn(pk, plain)
        listener.kill()
        down = events.wait(lambda e: e["type"] == "session_down" and e["public_key"] == pk, 30,
                           "session_down")
        self.assertIn(down["reason"], ("closed", "error", "timeout"))
        self.assertTrue(harness.wait_until(
            lambda: pk not in [s["public_key"] for s in ctl_json(self, a, "sessions")["sessions"]],
            10))
        # A kick closes the session at once; the event says so.
        listener2, pk2 = harness.start_listener(self.children, PORT + 1, server=a.server_ref,
                                                extra=["--no-stdin"], stdout=subprocess.DEVNULL)
        events.wait(lambda e: e["type"] == "session_up" and e["public_key"] == pk2, 15)
        ctl_ok(self, a, "session", "kick", pk2)
        kicked = events.wait(lambda e: e["type"] == "session_down" and e["public_key"] == pk2,
                             15, "session_down after the kick")
        self.assertEqual(kicked["reason"], "kicked")
        self.assertGreaterEqual(metric(adminlib.metrics(a), "dmsgd_sessions_evicted_total",
                                       reason="kicked"), 1)
        code, _, _ = ctl(a, "session", "kick", pk)
        self.assertEqual(code, 1, "kicking a session that is gone is refused")
        listener2.kill()
        events.stop()

    def test_5_metrics_move_with_traffic(self):
        a = self.a
        before = adminlib.metrics(a)
        events = adminlib.EventFollower(self.children, a, "stream_open,stream_close")
        events.wait_connected(a)
        echo, echo_pk = meshlib.echo_listener(self.children, a, PORT + 2)
        code, res, err = meshlib.echo_run(a, echo_pk, PORT + 2, streams=4, nbytes=256 << 10)
        self.assertEqual(res and res["ok"], 4, f"{res}\n{err[-2000:]}")
        opened = events.wait(lambda e: e["type"] == "stream_open", 10, "stream_open")
        self.assertEqual(opened["path"], "local")
        self.assertEqual(opened["responder"]["public_key"], echo_pk)
        closed = events.wait(lambda e: e["type"] == "stream_close" and e["id"] == opened["id"],
                             15, "stream_close")
        self.assertGreater(closed["bytes_forward"] + closed["bytes_reverse"], 0)
        after = adminlib.metrics(a)

        def grew(name, by, **labels):
            b, n = metric(before, name, **labels), metric(after, name, **labels)
            self.assertGreaterEqual(n - b, by, f"{name}{labels}: {b} -> {n}")

        grew("dmsgd_streams_opened_total", 4, path="local")
        # Each echoed byte crosses the relay twice.
        grew("dmsgd_relay_bytes_total", 2 * 4 * (256 << 10), path="local")
        grew("dmsgd_sessions_total", 2, kind="client")
        grew("dmsgd_admin_requests_total", 1, code="200")
        self.assertGreater(metric(after, "process_resident_memory_bytes"), 0)
        self.assertGreater(metric(after, "process_open_fds"), 0)
        self.assertEqual(metric(after, "dmsgd_route_setup_duration_seconds_count"), 0)
        self.assertGreaterEqual(metric(after, "dmsgd_discovery_updates_total", result="ok"), 1)
        events.stop()

    def test_6_streams_listed_while_relaying(self):
        a = self.a
        listener, lpk = harness.start_listener(self.children, PORT + 3, server=a.server_ref,
                                               extra=["--no-stdin"])
        dialer = harness.start_dialer(self.children, f"{lpk}:{PORT + 3}", server=a.server_ref,
                                      stdout=subprocess.DEVNULL)
        drain = Drain(listener.p.stdout)
        pump = Pump(dialer.p.stdin, 64 << 20)
        drain.start()
        pump.start()
        self.assertTrue(harness.wait_until(lambda: drain.read >= 1 << 20, 30), "no data flowed")
        streams = ctl_json(self, a, "streams")
        mine = [s for s in streams["streams"] if s["responder"]["public_key"] == lpk]
        self.assertEqual(len(mine), 1, streams)
        self.assertEqual((mine[0]["path"], mine[0]["state"]), ("local", "relaying"))
        self.assertGreater(mine[0]["bytes_forward"], 0)
        detail = ctl_json(self, a, "session", lpk)
        self.assertIn(mine[0]["id"], [s["id"] for s in detail["streams"]])
        self.assertGreaterEqual(metric(adminlib.metrics(a), "dmsgd_streams", path="local"), 1)
        dialer.kill()
        listener.kill()

    def test_7_stats_from_stored_samples(self):
        a = self.a
        time.sleep(2.5)  # a few samples at the test's 1 s interval
        stats = ctl_json(self, a, "stats", "--since", "5m", "--series", "dmsgd_sessions")
        self.assertEqual(stats["interval_seconds"], 1)
        names = [s["name"] for s in stats["series"]]
        self.assertIn('dmsgd_sessions{kind="client"}', names)
        self.assertTrue(all(n.startswith("dmsgd_sessions") for n in names), names)
        total = [s for s in stats["series"] if s["name"] == 'dmsgd_sessions_total{kind="client"}']
        self.assertTrue(total and total[0]["kind"] == "counter", stats)
        self.assertGreaterEqual(total[0]["samples"][-1][1], 2)
        self.assertGreaterEqual(len(total[0]["samples"]), 2)
        out = ctl_ok(self, a, "stats", "--since", "1m")
        self.assertIn("dmsgd_sessions", out)

    def test_8_clean_stop(self):
        self.a.stop(self)
        self.b.stop(self)


if __name__ == "__main__":
    harness.main(240)
