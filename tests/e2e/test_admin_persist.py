"""What an operator changes survives (issue 5): peers and the route setup toggle survive a clean
restart, and a SIGKILL right after dmsgctl got the acknowledgement (many times over); a database
of schema version 1 is upgraded at start and keeps its data; the store stays intact."""

import os
import signal
import sqlite3
import time

import adminlib
import harness
import meshlib
from adminlib import ctl_json, ctl_ok
from harness import E2ECase

ROUNDS = int(os.environ.get("DMSG_E2E_KILL_ROUNDS", "100"))
SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "schema")


def restart(daemon, how):
    """Stops the daemon (SIGTERM, or SIGKILL at once) and starts it again on the same state."""
    if how == "kill":
        daemon.proc.signal(signal.SIGKILL)
        daemon.proc.wait(10)
        daemon.proc.kill()
        daemon._stdout.close()
    else:
        daemon.proc.signal(signal.SIGTERM)
        code = daemon.proc.wait(20)
        daemon.proc.kill()
        daemon._stdout.close()
        assert code == 0, f"exit {code}:\n{daemon.proc.stderr_text()[-3000:]}"
    # The old process's socket file is stale after a SIGKILL; the new one replaces it.
    daemon.start()
    adminlib.wait_admin(daemon)


def integrity(daemon):
    db = sqlite3.connect(os.path.join(daemon.dir, "state", "dmsgd.db"))
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


class Persist(E2ECase):
    def test_1_clean_restart_keeps_peers_and_toggle(self):
        d = adminlib.admin_daemon(type(self), "restart")
        d.start()
        adminlib.wait_admin(d)
        peer = meshlib.pk_of(meshlib.new_sk())
        ctl_ok(self, d, "peer", "add", peer, "relay.example.net:8081", "--note", "kept 'note'")
        ctl_ok(self, d, "route-setup", "on")
        restart(d, "term")
        peers = ctl_json(self, d, "peer", "ls")["peers"]
        self.assertEqual([(p["public_key"], p["address"], p["source"], p["note"]) for p in peers],
                         [(peer, "relay.example.net:8081", "admin", "kept 'note'")])
        st = ctl_json(self, d, "route-setup", "status")
        self.assertEqual((st["enabled"], st["source"]), (True, "runtime"))
        self.assertTrue(ctl_json(self, d, "info")["route_setup"]["enabled"])
        d.stop(self)
        self.assertEqual(integrity(d), "ok")

    def test_2_sigkill_right_after_acknowledgement(self):
        d = adminlib.admin_daemon(type(self), "killed")
        d.start()
        adminlib.wait_admin(d)
        acknowledged = {}
        toggle = False
        started = time.monotonic()
        for i in range(ROUNDS):
            # Alternate adds and removes, and flip the toggle: each acknowledged change must be
            # there after the kill, and nothing unacknowledged may appear.
            if i % 3 == 2 and acknowledged:
                victim = sorted(acknowledged)[0]
                ctl_ok(self, d, "peer", "rm", victim)
                del acknowledged[victim]
            else:
                pk = meshlib.pk_of(meshlib.new_sk())
                addr = f"relay{i}.example.net:{8000 + i}"
                ctl_ok(self, d, "peer", "add", pk, addr)
                acknowledged[pk] = addr
            toggle = not toggle
            ctl_ok(self, d, "route-setup", "on" if toggle else "off")
            restart(d, "kill")  # SIGKILL as soon as dmsgctl returned
            peers = ctl_json(self, d, "peer", "ls")["peers"]
            self.assertEqual({p["public_key"]: p["address"] for p in peers}, acknowledged,
                             f"round {i}")
            self.assertEqual(ctl_json(self, d, "route-setup", "status")["enabled"], toggle,
                             f"round {i}")
        d.stop(self)
        self.assertEqual(integrity(d), "ok")
        print(f"persist: {ROUNDS} SIGKILL rounds in {time.monotonic() - started:.1f} s",
              flush=True)

    def test_3_upgrade_from_schema_version_1(self):
        d = adminlib.admin_daemon(type(self), "upgrade")
        state = os.path.join(d.dir, "state")
        os.makedirs(state, mode=0o700)
        peer = meshlib.pk_of(meshlib.new_sk())
        db = sqlite3.connect(os.path.join(state, "dmsgd.db"))
        with open(os.path.join(SCHEMA_DIR, "001_init.sql")) as f:
            db.executescript(f.read())
        db.execute("PRAGMA user_version = 1")
        db.execute("INSERT INTO peers VALUES (?, ?, 'admin', 1700000000, ?)",
                   (peer, "old.example.net:8081", "from v1; DROP TABLE peers;--"))
        db.execute("INSERT INTO settings VALUES ('route_setup', "
                   "'{\"enabled\":true,\"updated_at_ms\":1700000000000}', 1700000000)")
        db.execute("INSERT INTO metric_samples VALUES (1700000000, 'dmsgd_sessions{kind=\"client\"}',"
                   " 3)")
        # Route setup history: one finished long before the retention, one finished a minute
        # ago, and one the last run never finished (killed mid-setup).
        now_ms = int(time.time() * 1000)
        setups = [(1, 1700000000000, 1700000000042, "done"),
                  (2, now_ms - 60000, now_ms - 59990, "done"),
                  (3, now_ms - 30000, None, "reserving")]
        for sid, started, finished, setup_state in setups:
            db.execute("INSERT INTO route_setups VALUES (?, ?, ?, ?, 1, 1, ?, '', ?, ?)",
                       (sid, peer, peer, peer, setup_state, started, finished))
            db.execute("INSERT INTO route_setup_events VALUES (?, 'received', ?, '')",
                       (sid, started))
        db.commit()
        db.close()
        d.start()
        adminlib.wait_admin(d)
        latest = len([n for n in os.listdir(SCHEMA_DIR) if n.endswith(".sql")])
        self.assertEqual(ctl_json(self, d, "info")["schema_version"], latest)
        peers = ctl_json(self, d, "peer", "ls")["peers"]
        self.assertEqual([(p["public_key"], p["note"], p["added_at"]) for p in peers],
                         [(peer, "from v1; DROP TABLE peers;--", "2023-11-14T22:13:20Z")])
        st = ctl_json(self, d, "route-setup", "status")
        self.assertEqual((st["enabled"], st["source"]), (True, "runtime"))
        # Past the retention: gone at start, events too. Unfinished: failed, with an end.
        rows = {r["id"]: r for r in ctl_json(self, d, "routes")["route_setups"]}
        self.assertEqual(sorted(rows), [2, 3])
        self.assertEqual((rows[2]["state"], rows[2]["duration_ms"]), ("done", 10))
        self.assertEqual(rows[3]["state"], "failed")
        self.assertIn("stopped before the setup finished", rows[3]["error"])
        self.assertIsNotNone(rows[3]["finished_at"])
        status, detail = meshlib.admin(d, "GET", "/v1/route-setups/3")
        self.assertEqual(status, 200, detail)
        self.assertEqual([e["state"] for e in detail["events"]], ["received", "failed"])
        d.stop(self)
        db = sqlite3.connect(os.path.join(state, "dmsgd.db"))
        try:
            self.assertEqual(db.execute("PRAGMA user_version").fetchone()[0], latest)
            self.assertEqual(db.execute("SELECT count(*) FROM metric_samples WHERE at = "
                                        "1700000000").fetchone()[0], 0,
                             "the old sample was past its retention")
            self.assertEqual(db.execute("SELECT count(*) FROM route_setup_events WHERE "
                                        "setup_id = 1").fetchone()[0], 0)
        finally:
            db.close()


if __name__ == "__main__":
    harness.main(240)
