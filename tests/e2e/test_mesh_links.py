"""Who may use the mesh (issue 4): a line A-B-C (A and B peer, B and C peer) forwards one hop only;
a server that is not a configured peer is an ordinary client, whose requests for other sources are
refused with 302 while the server keeps serving; newer reference servers' PeerAnnounce is answered
for configured peers only, and dmsgd sends its own on the links it dials."""

import subprocess
import time

import harness
import meshlib
from harness import E2ECase

PORT = 7


class Line(E2ECase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        a = meshlib.keyed_daemon(cls, "A", log_level="debug")
        b = meshlib.keyed_daemon(cls, "B", log_level="debug")
        c = meshlib.keyed_daemon(cls, "C", log_level="debug")
        meshlib.start_with_peers([(a, [b]), (b, [a, c]), (c, [b])])
        cls.a, cls.b, cls.c = a, b, c
        for x, y in ((a, b), (b, a), (b, c), (c, b)):
            meshlib.link(x, y)
        cls.echo_a = meshlib.echo_listener(cls.children, a, PORT)[1]
        cls.echo_b = meshlib.echo_listener(cls.children, b, PORT)[1]
        cls.echo_c = meshlib.echo_listener(cls.children, c, PORT)[1]

    def dial_fails_promptly(self, server, dst_pk):
        dialer = harness.start_dialer(self.children, f"{dst_pk}:{PORT}", server=server.server_ref,
                                      extra=["--timeout", "15"], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL)
        t0 = time.monotonic()
        code = dialer.wait(20)
        return code, time.monotonic() - t0, dialer

    def test_1_one_hop_only(self):
        a, b, c = self.a, self.b, self.c
        code, res, err = meshlib.echo_run(a, self.echo_b, PORT, streams=2)
        self.assertEqual(res and res["ok"], 2, f"A's client did not reach B's: {res}\n{err}")
        c_streams = meshlib.stream_log_lines(c)
        b_refusals = meshlib.count_lines(b, r'msg="stream refused" reason=fail_no_destination')
        # C's client is two hops away: A asks B, B has no such client and must not ask C.
        code, secs, dialer = self.dial_fails_promptly(a, self.echo_c)
        self.assertEqual(code, 5, f"dial to a client two hops away: exit {code}\n"
                         f"{dialer.stderr_text()}")
        self.assertLess(secs, 4.0, "the refusal was not prompt")
        meshlib.wait_count(b, r'msg="stream refused" reason=fail_no_destination',
                           b_refusals + 1, 5)
        time.sleep(0.3)
        self.assertEqual(meshlib.stream_log_lines(c), c_streams,
                         "a request travelled two hops (C saw a stream)")
        # The miss is remembered for a short time: the next dial is refused at once by A.
        code, secs2, _ = self.dial_fails_promptly(a, self.echo_c)
        self.assertEqual(code, 5)
        self.log(f"two-hop dial refused in {secs:.2f} s, again in {secs2:.2f} s; "
                 f"C saw no stream")
        # The other direction of the line works too.
        code, res, err = meshlib.echo_run(c, self.echo_b, PORT, streams=2)
        self.assertEqual(res and res["ok"], 2, f"{res}\n{err}")

    def test_2_unconfigured_server_is_only_a_client(self):
        a, c = self.a, self.c
        client_sk = meshlib.new_sk()
        refused_302 = meshlib.count_lines(a, r'msg="stream refused" reason=fail_source_key')
        # C's key is not one of A's peers: what C's link carries is a client's traffic.
        lines, err, _ = meshlib.meshpeer(["--sk", c.sk, "--server", a.server_ref, "relay",
                                          "--src-sk", client_sk, "--dst",
                                          f"{self.echo_a}:{PORT}"])
        self.assertTrue(lines, err)
        self.assertEqual(lines[-1].get("result"), "closed", f"{lines}\n{err}")
        self.assertLess(lines[-1]["ms"], 3000)
        meshlib.wait_count(a, r'msg="stream refused" reason=fail_source_key', refused_302 + 1, 5)
        lines, err, _ = meshlib.meshpeer(["--sk", c.sk, "--server", a.server_ref, "announce"])
        self.assertEqual(lines and lines[-1].get("answer"), "refused", f"{lines}\n{err}")
        # The server keeps serving its clients.
        code, res, err = meshlib.echo_run(a, self.echo_a, PORT, streams=2)
        self.assertEqual(res and res["ok"], 2, f"{res}\n{err}")
        self.log("foreign-source request from an unconfigured server closed (302); "
                 "its PeerAnnounce refused; local clients served")

    def test_3_newer_reference_server_peer_announce(self):
        a, b = self.a, self.b
        u_sk = meshlib.new_sk()
        u_pk = meshlib.pk_of(u_sk)
        u_port = harness.free_port()
        # U plays a newer reference server that A lists as a peer: A dials it and announces.
        u = harness.Proc([meshlib.meshpeer_bin(), "--sk", u_sk, "--timeout", "20", "listen",
                          str(u_port)], "meshpeer-listen", stdout=subprocess.PIPE)
        self.children.add(u)
        u.wait_line(r"meshpeer: listening", 10)
        meshlib.set_peers(a, [b, (u_pk, f"127.0.0.1:{u_port}")])
        out, _ = u.p.communicate(timeout=20)
        got = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
        self.assertTrue(got, u.stderr_text())
        self.assertIn('"announce":"ok"', got[-1])
        self.assertIn(a.pk, got[-1])
        # U dials A (as upstream servers dial the servers they peer with): its announce is
        # accepted, and the request it relays for one of its clients reaches A's client.
        lines, err, _ = meshlib.meshpeer(["--sk", u_sk, "--server", a.server_ref, "announce",
                                          "--then-relay", "--src-sk", meshlib.new_sk(), "--dst",
                                          f"{self.echo_a}:{PORT}"])
        self.assertEqual(len(lines), 2, f"{lines}\n{err}")
        self.assertEqual(lines[0].get("answer"), "accepted", lines)
        self.assertEqual(lines[1].get("result"), "response",
                         f"{lines}\n{a.proc.stderr_text()[-3000:]}")
        self.assertTrue(lines[1].get("accepted"), lines)
        # A relayed request from a peer is delivered locally only: never forwarded to B.
        lines, err, _ = meshlib.meshpeer(["--sk", u_sk, "--server", a.server_ref, "relay",
                                          "--src-sk", meshlib.new_sk(), "--dst",
                                          f"{self.echo_b}:{PORT}"])
        self.assertEqual(lines and lines[-1].get("result"), "closed", f"{lines}\n{err}")
        self.log("dmsgd announced itself to U; U's announce accepted; U's relayed request "
                 "delivered locally, one for B refused")

    def test_4_clean_exit(self):
        self.children.kill_all()
        for s in (self.a, self.b, self.c):
            s.stop(self)


class ClientDialOrder(E2ECase):
    """Issue 4 item 8: a client whose destination is delegated to a server it holds no session
    to dials through the sessions it has first (the mesh delivers), before connecting to a new
    server; with --mesh off it does not."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        a = meshlib.keyed_daemon(cls, "A")
        b = meshlib.keyed_daemon(cls, "B", extra={"discovery": a.discovery_url})
        b.disc_port = a.disc_port  # B registers in A's embedded discovery; it runs none itself
        meshlib.start_with_peers([(a, [b]), (b, [a])])
        cls.a, cls.b = a, b
        meshlib.link(b, a)
        b.wait_registered()

    def test_1_mesh_first_needs_no_new_session(self):
        a, b = self.a, self.b
        listener, lpk = harness.start_listener(self.children, 9, server=b.server_ref,
                                               discovery=a.discovery_url,
                                               extra=["--echo", "--keep-open"],
                                               stdout=subprocess.DEVNULL)
        dialer = harness.start_dialer(self.children, f"{lpk}:9", server=a.server_ref,
                                      discovery=a.discovery_url,
                                      extra=["--mesh", "first", "--expect", "5", "--timeout",
                                             "20"])
        dpk = dialer.wait_line(r"pk=([0-9a-f]{66})", 10).group(1)
        out, _ = dialer.p.communicate(b"hello", timeout=30)
        self.assertEqual(out, b"hello", dialer.stderr_text())
        self.assertEqual(dialer.p.returncode, 0, dialer.stderr_text())
        self.assertEqual(meshlib.count_lines(b, rf"session started remote_pk={dpk}"), 0,
                         "the dialer connected to the destination's server")
        # Without the mesh path a client held to A alone cannot reach B's client.
        dialer = harness.start_dialer(self.children, f"{lpk}:9", server=a.server_ref,
                                      discovery=a.discovery_url,
                                      extra=["--mesh", "off", "--timeout", "10"],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        self.assertNotEqual(dialer.wait(20), 0)
        self.log("mesh-first dial delivered through A's peer link; --mesh off did not")

    def test_2_clean_exit(self):
        self.children.kill_all()
        for s in (self.a, self.b):
            s.stop(self)


if __name__ == "__main__":
    harness.main(budget_s=120)
