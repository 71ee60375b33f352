"""Peer links over time (issue 4): both servers of a pair list each other, whichever dials first;
a pair where only one side's link can come up still forwards both ways (either link carries
forwarded requests); a peer killed mid-stream takes only its own streams along and its link
comes back when it returns; peers removed and added at runtime under traffic (admin API, or the
config file and SIGHUP) close only their own streams, and a removed peer loses its trust at
once."""

import subprocess
import time

import harness
import meshlib
from harness import Drain, E2ECase, Pump

PORT = 7


def both_ways(case, x, y, echo):
    for src, dst in ((x, y), (y, x)):
        code, res, err = meshlib.echo_run(src, echo[dst.name], PORT, streams=2, nbytes=128 << 10)
        case.assertEqual(res and res["ok"], 2, f"{src.name}->{dst.name}: {res}\n{err[-3000:]}")


def piped_stream(case, src, dst, port, total, slow_rate=None):
    """dmsgcat from a client on src to a listener on dst, with a pump and a drain running.
    slow_rate paces the drain from its first byte: a stream that must still be flowing later
    cannot finish early on a fast machine."""
    listener, lpk = harness.start_listener(case.children, port, server=dst.server_ref,
                                           extra=["--no-stdin"])
    dialer = harness.start_dialer(case.children, f"{lpk}:{port}", server=src.server_ref,
                                  stdout=subprocess.DEVNULL)
    drain = Drain(listener.p.stdout)
    drain.slow_rate = slow_rate
    pump = Pump(dialer.p.stdin, total)
    drain.start()
    pump.start()
    case.assertTrue(harness.wait_until(lambda: drain.read >= 256 << 10, 30), "no data flowed")
    return dialer, listener, pump, drain


def finish_intact(case, dialer, listener, pump, drain, total):
    drain.slow_rate = None
    pump.join(60)
    drain.join(60)
    case.assertFalse(pump.is_alive() or drain.is_alive(), "the stream did not finish")
    case.assertEqual(drain.read, total)
    case.assertEqual(drain.sha.hexdigest(), pump.sha.hexdigest())
    case.assertEqual(dialer.wait(15), 0, dialer.stderr_text())
    case.assertEqual(listener.wait(15), 0, listener.stderr_text())


class DuplicateLinks(E2ECase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        names = ["A", "B", "C", "D", "E", "F"]
        cls.s = {n: meshlib.keyed_daemon(cls, n) for n in names}
        for d in cls.s.values():
            d.start()
        cls.echo = {n: meshlib.echo_listener(cls.children, d, PORT)[1]
                    for n, d in cls.s.items()}

    def test_1_a_dials_first(self):
        a, b = self.s["A"], self.s["B"]
        meshlib.set_peers(a, [b])
        meshlib.link(a, b)
        # B does not list A yet: A's link is an ordinary client session there. Listing A now
        # makes that very session a peer session, and B dials back.
        meshlib.set_peers(b, [a])
        meshlib.link(b, a)
        both_ways(self, a, b, self.echo)

    def test_2_d_dials_first(self):
        c, d = self.s["C"], self.s["D"]
        meshlib.set_peers(d, [c])
        meshlib.link(d, c)
        meshlib.set_peers(c, [d])
        meshlib.link(c, d)
        both_ways(self, c, d, self.echo)

    def test_3_only_one_link_can_come_up(self):
        e, f = self.s["E"], self.s["F"]
        dead = f"127.0.0.1:{harness.free_port()}"
        # E lists F at an address where nobody listens: only F's link to E exists, and it
        # carries E's forwarded requests too (F serves streams opened on the link it dialed).
        meshlib.set_peers(e, [(f, dead)])
        meshlib.set_peers(f, [e])
        meshlib.link(f, e)
        both_ways(self, e, f, self.echo)
        self.assertEqual(meshlib.count_lines(e, meshlib.link_up_pattern(f)), 0)

    def test_4_clean_exit(self):
        self.children.kill_all()
        for d in self.s.values():
            d.stop(self)


class RuntimeChanges(E2ECase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        a = meshlib.keyed_daemon(cls, "A")
        b = meshlib.keyed_daemon(cls, "B")
        c = meshlib.keyed_daemon(cls, "C")
        meshlib.start_with_peers([(a, [b]), (b, [a]), (c, [a])])
        cls.a, cls.b, cls.c = a, b, c
        # C is added at runtime, through the admin API when the daemon has it.
        cls.add_peer(a, c)
        for x, y in ((a, b), (b, a), (a, c), (c, a)):
            meshlib.link(x, y)

    @classmethod
    def add_peer(cls, a, c):
        if meshlib.admin_available(a):
            status, body = meshlib.admin(a, "POST", "/v1/peers",
                                         {"public_key": c.pk, "address": c.addr,
                                          "note": "added at runtime"})
            assert status == 201, (status, body)
            assert body["source"] == "admin", body
        else:
            meshlib.set_peers(a, [cls.b, c])

    @classmethod
    def remove_peer(cls, a, c):
        if meshlib.admin_available(a):
            status, body = meshlib.admin(a, "DELETE", f"/v1/peers/{c.pk}")
            assert status == 204, (status, body)
        else:
            meshlib.set_peers(a, [cls.b])

    def test_1_peer_killed_mid_stream(self):
        a, b = self.a, self.b
        total = 24 << 20
        mesh = piped_stream(self, a, b, 11, 1 << 30)
        local = piped_stream(self, a, a, 12, total, slow_rate=512 << 10)  # alive across the kill
        b.kill()  # SIGKILL
        # The stream over the dead link ends on A's side at once (TCP reset/FIN of the link).
        code = mesh[0].wait(10)
        self.log(f"dialer through the killed peer exited {code}")
        read_at_kill = local[3].read
        self.assertTrue(harness.wait_until(lambda: local[3].read > read_at_kill + (256 << 10),
                                           5), "the local stream stopped with the peer")
        finish_intact(self, *local, total)
        # The peer returns: the link comes back after the backoff (5 s +-20%).
        ups = meshlib.count_lines(a, meshlib.link_up_pattern(b))
        t0 = time.monotonic()
        b.start()
        meshlib.wait_count(a, meshlib.link_up_pattern(b), ups + 1, 15)
        self.log(f"link back {time.monotonic() - t0:.1f} s after the peer restarted")
        echo_b = meshlib.echo_listener(self.children, b, 13)[1]
        code, res, err = meshlib.echo_run(a, echo_b, 13, streams=2)
        self.assertEqual(res and res["ok"], 2, f"{res}\n{err}")

    def test_2_remove_and_add_under_traffic(self):
        a, b, c = self.a, self.b, self.c
        total = 24 << 20
        to_b = piped_stream(self, a, b, 21, total, slow_rate=512 << 10)  # alive across removal
        to_c = piped_stream(self, a, c, 22, 1 << 30)
        # Remove C from A's peers: its links and the stream over them close, nothing else.
        self.remove_peer(a, c)
        if meshlib.admin_available(a):
            status, body = meshlib.admin(a, "DELETE", f"/v1/peers/{b.pk}")
            self.assertEqual(status, 409, body)  # B comes from the config file
            self.assertEqual(body["code"], "peer_from_config")
        code = to_c[0].wait(10)
        self.log(f"dialer through the removed peer exited {code}")
        read_then = to_b[3].read
        self.assertTrue(harness.wait_until(lambda: to_b[3].read > read_then + (256 << 10), 5),
                        "the stream through the other peer stopped")
        finish_intact(self, *to_b, total)
        # C still lists A and redials, but A no longer trusts it: C's clients' requests that C
        # forwards are refused (302), while A's own clients are unaffected.
        echo_a = meshlib.echo_listener(self.children, a, 23)[1]
        code, res, err = meshlib.echo_run(c, echo_a, 23, streams=1, timeout=15)
        self.assertEqual(res and res["ok"], 0, f"C's client reached A's: {res}")
        # Add C back: A links to C again and traffic flows both ways.
        ups = meshlib.count_lines(a, meshlib.link_up_pattern(c))
        self.add_peer(a, c)
        meshlib.wait_count(a, meshlib.link_up_pattern(c), ups + 1, 10)
        echo_c = meshlib.echo_listener(self.children, c, 24)[1]
        code, res, err = meshlib.echo_run(a, echo_c, 24, streams=2)
        self.assertEqual(res and res["ok"], 2, f"A->C after re-adding: {res}\n{err}")
        ok = harness.wait_until(lambda: meshlib.echo_run(c, echo_a, 23, streams=1,
                                                         timeout=10)[1]["ok"] == 1, 15, 0.5)
        self.assertTrue(ok, "C->A after re-adding")

    def test_3_clean_exit(self):
        self.children.kill_all()
        for d in (self.a, self.b, self.c):
            d.stop(self)


if __name__ == "__main__":
    harness.main(budget_s=120)
