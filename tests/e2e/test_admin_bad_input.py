"""Bad input to the admin API (issue 5, threats.md §3.9): malformed JSON, wrong types, invalid keys
and addresses, huge bodies, quotes and SQL in strings, missing or wrong tokens, a browser Origin,
50 parallel conflicting add/remove. Each gets the contract's 4xx problem, the store stays
consistent (same peers after a restart, integrity_check ok) and the relay keeps serving; a locked
store answers 503 store_unavailable and the daemon recovers once the lock is gone."""

import concurrent.futures
import os
import signal
import sqlite3
import time

import adminlib
import harness
import meshlib
from adminlib import assert_problem, ctl, ctl_json, ctl_ok, tcp_request, unix_request
from harness import E2ECase

PORT = 9
GOOD_PK = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
OFF_CURVE = "02" + "f" * 64
SQL = "x'); DROP TABLE peers; --\" OR \"1\"=\"1"


class BadInput(E2ECase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.d = adminlib.admin_daemon(cls, "bad", tcp=True)
        cls.d.start()
        adminlib.wait_admin(cls.d)
        cls.echo, cls.echo_pk = meshlib.echo_listener(cls.children, cls.d, PORT)

    def relay_serves(self):
        code, res, err = meshlib.echo_run(self.d, self.echo_pk, PORT, streams=2,
                                          nbytes=64 << 10)
        self.assertEqual(res and res["ok"], 2, f"the relay stopped serving: {res}\n{err[-2000:]}")

    def post_peer(self, body, headers=None):
        return unix_request(self.d, "POST", "/v1/peers", body, headers)

    def test_01_malformed_json(self):
        for body in ["", "{", "[]", "null", "\"peer\"", "{\"public_key\":}",
                     "{\"public_key\":\"a\",\"public_key\":\"b\",\"address\":\"h:1\"}",
                     b"{\"public_key\":\"\xff\xfe\",\"address\":\"h:1\"}"]:
            a = self.post_peer(body, {"Content-Type": "application/json"})
            assert_problem(self, a, 400, "malformed_json")

    def test_02_wrong_types_unknown_and_missing_members(self):
        assert_problem(self, self.post_peer({"public_key": 2, "address": "h:1"}), 422,
                       "invalid_field", "public_key")
        assert_problem(self, self.post_peer({"public_key": GOOD_PK, "address": ["h", 1]}), 422,
                       "invalid_field", "address")
        assert_problem(self, self.post_peer({"public_key": GOOD_PK, "address": "h:1",
                                             "note": 5}), 422, "invalid_field", "note")
        assert_problem(self, self.post_peer({"public_key": GOOD_PK, "address": "h:1",
                                             "admin": True}), 422, "unknown_field", "admin")
        assert_problem(self, self.post_peer({"address": "h:1"}), 422, "missing_field",
                       "public_key")
        for v in ["true", 1, None, "yes"]:
            a = unix_request(self.d, "PUT", "/v1/route-setup", {"enabled": v})
            assert_problem(self, a, 422, "invalid_field", "enabled")
        assert_problem(self, unix_request(self.d, "PUT", "/v1/route-setup", {}), 422,
                       "missing_field", "enabled")

    def test_03_content_type_and_huge_bodies(self):
        a = self.post_peer('{"public_key":"%s","address":"h:1"}' % GOOD_PK,
                           {"Content-Type": "text/plain"})
        assert_problem(self, a, 415, "unsupported_media_type")
        a = self.post_peer('{"public_key":"%s","address":"h:1"}' % GOOD_PK)
        assert_problem(self, a, 415, "unsupported_media_type")
        big = ('{"public_key":"%s","address":"h:1","note":"%s"}' % (GOOD_PK, "a" * 70000)).encode()
        a = adminlib.raw_unix_request(self.d, b"POST /v1/peers HTTP/1.1\r\nHost: localhost\r\n"
                                      b"Content-Type: application/json\r\n"
                                      b"Content-Length: %d\r\n\r\n" % len(big) + big)
        assert_problem(self, a, 413, "body_too_large")
        # A huge declared body is refused before a byte of it is read.
        a = adminlib.raw_unix_request(self.d, b"POST /v1/peers HTTP/1.1\r\nHost: localhost\r\n"
                                      b"Content-Type: application/json\r\n"
                                      b"Content-Length: 8388608\r\n\r\n{")
        assert_problem(self, a, 413, "body_too_large")

    def test_04_invalid_keys_and_addresses(self):
        for pk in ["", "02", "zz" * 33, OFF_CURVE, "04" + GOOD_PK[2:], GOOD_PK + "00",
                   "02'; DROP TABLE peers;--" + "0" * 42]:
            a = self.post_peer({"public_key": pk, "address": "relay:8081"})
            assert_problem(self, a, 422, "invalid_public_key", "public_key")
        for addr in ["", "relay", "relay:0", "relay:65536", "relay:-1", "re lay:80", "[::1]",
                     "::1:80", "relay:80'; DROP TABLE peers;--", "a" * 300 + ":80",
                     "http://relay:80"]:
            a = self.post_peer({"public_key": GOOD_PK, "address": addr})
            assert_problem(self, a, 422, "invalid_address", "address")
        for note in ["a\nb", "tab\there", "x" * 257, "\u00e9" * 129]:
            a = self.post_peer({"public_key": GOOD_PK, "address": "relay:80", "note": note})
            assert_problem(self, a, 422, "invalid_field", "note")
        a = self.post_peer({"public_key": self.d.pk, "address": "relay:80"})
        assert_problem(self, a, 422, "peer_is_self", "public_key")
        for path in ["/v1/peers/zz", "/v1/peers/" + OFF_CURVE, "/v1/sessions/" + "0" * 66]:
            assert_problem(self, unix_request(self.d, "GET", path), 400, "invalid_public_key")
        assert_problem(self, unix_request(self.d, "GET", "/v1/peers/" + GOOD_PK), 404,
                       "peer_not_found")
        assert_problem(self, unix_request(self.d, "DELETE", "/v1/peers/" + GOOD_PK), 404,
                       "peer_not_found")
        assert_problem(self, unix_request(self.d, "GET", "/v1/sessions/" + GOOD_PK), 404,
                       "session_not_found")
        # dmsgctl checks keys and addresses before asking: a usage error, exit 2.
        code, _, err = ctl(self.d, "peer", "add", "zz", "relay:80")
        self.assertEqual(code, 2, err)
        self.assertIn("zz", err)
        code, _, err = ctl(self.d, "peer", "add", GOOD_PK, "relay")
        self.assertEqual(code, 2, err)

    def test_05_quotes_and_sql_are_data(self):
        a = self.post_peer({"public_key": GOOD_PK, "address": "relay.example.net:8081",
                            "note": SQL})
        self.assertEqual(a.status, 201, a)
        self.assertEqual(a.header("Location"), "/v1/peers/" + GOOD_PK)
        self.assertEqual(a.json()["note"], SQL)
        shown = ctl_json(self, self.d, "peer", "show", GOOD_PK)
        self.assertEqual(shown["note"], SQL)
        assert_problem(self, self.post_peer({"public_key": GOOD_PK.upper().replace("0X", "0x"),
                                             "address": "relay:80"}), 409, "peer_exists")
        a = unix_request(self.d, "GET", "/v1/sessions?remote=" + "%27%3B%20DROP%20TABLE")
        self.assertEqual(a.status, 200, a)
        self.assertEqual(unix_request(self.d, "DELETE", "/v1/peers/" + GOOD_PK).status, 204)

    def test_06_paths_methods_and_queries(self):
        assert_problem(self, unix_request(self.d, "GET", "/v1/nothing"), 404, "not_found")
        a = unix_request(self.d, "PATCH", "/v1/peers")
        assert_problem(self, a, 405, "method_not_allowed")
        self.assertEqual(a.header("Allow"), "GET, POST")
        for q in ["limit=0", "limit=1001", "limit=x", "kind=server", "pk=xyz",
                  "min_streams=-1", "bogus=1", "limit=1&limit=2"]:
            assert_problem(self, unix_request(self.d, "GET", "/v1/sessions?" + q), 400,
                           "invalid_query")
        assert_problem(self, unix_request(self.d, "GET", "/v1/sessions?after=zz"), 400,
                       "invalid_public_key")
        for q in ["since=0", "since=1w", "since=400d", "series="]:
            assert_problem(self, unix_request(self.d, "GET", "/v1/stats?" + q), 400,
                           "invalid_query")
        assert_problem(self, unix_request(self.d, "GET", "/v1/events?types=nope"), 400,
                       "invalid_query")
        a = unix_request(self.d, "GET", "/v1/health")
        self.assertEqual(a.header("Cache-Control"), "no-store")

    def test_07_browser_origin_refused(self):
        for h in [{"Origin": "http://evil.example"}, {"Origin": "null"},
                  {"Sec-Fetch-Site": "cross-site"}]:
            assert_problem(self, unix_request(self.d, "GET", "/v1/health", headers=h), 403,
                           "origin_refused")
            a = unix_request(self.d, "PUT", "/v1/route-setup", {"enabled": True}, headers=h)
            assert_problem(self, a, 403, "origin_refused")
            a = tcp_request(self.d, "GET", "/v1/health",
                            headers=dict(h, Authorization="Bearer " + adminlib.token(self.d)))
            assert_problem(self, a, 403, "origin_refused")
            self.assertIsNone(a.header("Access-Control-Allow-Origin"))
        self.assertFalse(ctl_json(self, self.d, "route-setup", "status")["enabled"])

    def test_08_tokens_on_tcp(self):
        d = self.d
        a = tcp_request(d, "GET", "/v1/health")
        assert_problem(self, a, 401, "token_missing")
        self.assertEqual(a.header("WWW-Authenticate"), 'Bearer realm="dmsgd"')
        a = tcp_request(d, "GET", "/v1/health", headers={"Authorization": "Bearer " + "0" * 64})
        assert_problem(self, a, 401, "token_invalid")
        self.assertIn('error="invalid_token"', a.header("WWW-Authenticate"))
        a = tcp_request(d, "GET", "/metrics", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert_problem(self, a, 400, "bad_authorization")
        self.assertIn('error="invalid_request"', a.header("WWW-Authenticate"))
        ro = {"Authorization": "Bearer " + adminlib.token(d, readonly=True)}
        self.assertEqual(tcp_request(d, "GET", "/metrics", headers=ro).status, 200)
        a = tcp_request(d, "PUT", "/v1/route-setup", {"enabled": True}, headers=ro)
        assert_problem(self, a, 403, "insufficient_scope")
        self.assertIn('scope="admin"', a.header("WWW-Authenticate"))
        rw = {"Authorization": "Bearer " + adminlib.token(d)}
        self.assertEqual(tcp_request(d, "PUT", "/v1/route-setup", {"enabled": False},
                                     headers=rw).status, 200)
        for name in ("admin.token", "admin-readonly.token"):
            mode = os.stat(os.path.join(d.dir, "state", name)).st_mode & 0o777
            self.assertEqual(mode, 0o600, name)
        mode = os.stat(adminlib.socket_path(d)).st_mode & 0o777
        self.assertEqual(mode, 0o660)
        # dmsgctl over TCP: the right token works, the read-only one cannot change anything.
        url = f"127.0.0.1:{d.admin_port}"
        ro_file = os.path.join(d.dir, "state", "admin-readonly.token")
        code, _, err = ctl(d, "--admin", url, "--token-file", ro_file, "route-setup", "on")
        self.assertEqual(code, 4, err)
        code, _, err = ctl(d, "--admin", url, "--token-file", ro_file, "health")
        self.assertEqual(code, 0, err)

    def test_09_fifty_parallel_conflicting_changes(self):
        d = self.d
        keys = [meshlib.pk_of(meshlib.new_sk()) for _ in range(5)]

        def one(i):
            pk = keys[i % len(keys)]
            if i % 2 == 0:
                return ctl(d, "peer", "add", pk, f"relay{i}.example.net:80", timeout=60)
            return ctl(d, "peer", "rm", pk, timeout=60)

        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(one, range(50)))
        for code, out, err in results:
            # Success, or a refusal (peer_exists / peer_not_found): never a failure of dmsgd.
            self.assertIn(code, (0, 1), f"{out}\n{err}")
            if code == 1:
                self.assertTrue("already a peer" in err or "not a peer" in err, err)
        self.assertTrue(any(c == 0 for c, _, _ in results))
        listed = {p["public_key"] for p in ctl_json(self, d, "peer", "ls")["peers"]}
        self.assertTrue(listed <= set(keys))
        m = adminlib.metrics(d)
        self.assertEqual(adminlib.metric(m, "dmsgd_admin_requests_total", code="500"), 0)
        self.assertEqual(adminlib.metric(m, "dmsgd_admin_requests_total", code="503"), 0)
        self.relay_serves()
        # The store agrees with what the daemon said: same peers after a restart.
        d.proc.signal(signal.SIGTERM)
        self.assertEqual(d.proc.wait(20), 0)
        d.proc.kill()
        d._stdout.close()
        d.proc.assert_no_sanitizer_report(self)
        db = sqlite3.connect(os.path.join(d.dir, "state", "dmsgd.db"))
        try:
            self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok")
            self.assertEqual(db.execute("SELECT count(*) FROM peers").fetchone()[0], len(listed))
        finally:
            db.close()
        d.start()
        adminlib.wait_admin(d)
        again = {p["public_key"] for p in ctl_json(self, d, "peer", "ls")["peers"]}
        self.assertEqual(again, listed)
        for pk in again:
            ctl_ok(self, d, "peer", "rm", pk)
        # The echo listener's session died with the daemon: give it a new one.
        self.echo.kill()
        type(self).echo, type(self).echo_pk = meshlib.echo_listener(self.children, d, PORT)

    def test_10_locked_store_is_503_and_recovers(self):
        d = self.d
        # Another process holds the database's write lock (what an operator's sqlite3 shell
        # would do): the change waits for the busy timeout, then is refused and not applied.
        db = sqlite3.connect(os.path.join(d.dir, "state", "dmsgd.db"), timeout=1,
                             isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        try:
            a = unix_request(d, "PUT", "/v1/route-setup", {"enabled": True}, timeout=60)
            p = assert_problem(self, a, 503, "store_unavailable")
            self.assertIn("locked", p["detail"])
            h = unix_request(d, "GET", "/v1/health", timeout=60).json()
            self.assertEqual((h["status"], h["store"]), ("degraded", "error"))
        finally:
            db.execute("ROLLBACK")
            db.close()
        self.assertFalse(ctl_json(self, d, "route-setup", "status")["enabled"],
                         "a refused change is not applied")
        ctl_ok(self, d, "route-setup", "on")
        # The next metric sample (every second here) proves the store healthy again.
        self.assertTrue(harness.wait_until(
            lambda: ctl_json(self, d, "health")["store"] == "ok", 10), "store still in error")
        self.assertGreaterEqual(adminlib.metric(adminlib.metrics(d), "dmsgd_store_errors_total",
                                                fault="locked"), 1)
        self.relay_serves()
        ctl_ok(self, d, "route-setup", "off")

    def test_11_clean_stop(self):
        self.relay_serves()
        self.d.stop(self)


if __name__ == "__main__":
    harness.main(240)
