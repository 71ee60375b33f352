/* The mesh's pure parts: the PeerAnnounce object and its answer (upstream-mesh.md §2-3), and the
 * bounded destination caches. The links and forwarding run against real daemons in
 * tests/e2e/test_mesh_*.py. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "dmsg/cipher.h"
#include "dmsg/error.h"
#include "dmsg/wire.h"
#include "mesh.h"
#include "mesh_announce.h"
#include "mesh_cache.h"
#include "store.h"

static void setup(void)
{
    cr_assert_eq(dmsg_cipher_init(), 0);
}

TestSuite(mesh_announce, .init = setup);
TestSuite(mesh_cache);
TestSuite(mesh_peers, .init = setup, .timeout = 30);

/* A fixed byte stream, so every run uses the same keys. */
static void counter_fill(void *ctx, uint8_t *out, size_t len)
{
    uint8_t *seed = ctx;

    for (size_t i = 0; i < len; i++)
        out[i] = (uint8_t)(*seed + i * 7u + 1u);
    (*seed)++;
}

typedef struct key {
    dmsg_pk pk;
    dmsg_sk sk;
} key;

static key make_key(uint8_t seed)
{
    dmsg_rng rng = {.fill = counter_fill, .ctx = &seed};
    key k;

    cr_assert_eq(dmsg_keypair_generate(&k.pk, &k.sk, &rng), 0);
    return k;
}

static bool contains(const uint8_t *hay, size_t n, const char *needle)
{
    size_t m = strlen(needle);

    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(hay + i, needle, m) == 0)
            return true;
    return false;
}

#define NOW_NS INT64_C(1775736000000000000) /* 2026-04-09T12:00:00Z */

Test(mesh_announce, round_trip)
{
    key a = make_key(1);
    uint8_t obj[MESH_ANNOUNCE_MAX];
    size_t len = 0;
    int64_t ts = 0;

    cr_assert_eq(mesh_announce_make(&a.pk, &a.sk, NOW_NS, obj, sizeof obj, &len), 0);
    cr_assert_gt(len, DMSG_SIG_LEN + DMSG_PK_LEN);
    /* Go's gob names the type and its fields in the definition message. */
    cr_assert(contains(obj, len, "PeerAnnounce"));
    cr_assert(contains(obj, len, "Timestamp"));
    cr_assert(contains(obj, len, "SrcPK"));
    cr_assert_eq(mesh_announce_parse(obj, len, &a.pk, &ts), 0);
    cr_assert_eq(ts, NOW_NS);
}

Test(mesh_announce, another_sessions_key_is_refused)
{
    key a = make_key(1), b = make_key(2);
    uint8_t obj[MESH_ANNOUNCE_MAX];
    size_t len = 0;

    cr_assert_eq(mesh_announce_make(&a.pk, &a.sk, NOW_NS, obj, sizeof obj, &len), 0);
    cr_assert_eq(mesh_announce_parse(obj, len, &b.pk, NULL), DMSG_EKEY);
}

Test(mesh_announce, signature_by_another_key_is_refused)
{
    key a = make_key(1), b = make_key(2);
    uint8_t obj[MESH_ANNOUNCE_MAX];
    size_t len = 0;

    /* SrcPK says a, the signature is b's. */
    cr_assert_eq(mesh_announce_make(&a.pk, &b.sk, NOW_NS, obj, sizeof obj, &len), 0);
    cr_assert_eq(mesh_announce_parse(obj, len, &a.pk, NULL), DMSG_ESIG);
}

Test(mesh_announce, every_flipped_signature_or_body_byte_is_refused)
{
    key a = make_key(1);
    uint8_t obj[MESH_ANNOUNCE_MAX], bad[MESH_ANNOUNCE_MAX];
    size_t len = 0;

    cr_assert_eq(mesh_announce_make(&a.pk, &a.sk, NOW_NS, obj, sizeof obj, &len), 0);
    for (size_t i = 0; i < len; i++) {
        memcpy(bad, obj, len);
        bad[i] ^= 0x01;
        cr_assert_neq(mesh_announce_parse(bad, len, &a.pk, NULL), 0, "byte %zu", i);
    }
}

Test(mesh_announce, every_truncation_is_refused)
{
    key a = make_key(1);
    uint8_t obj[MESH_ANNOUNCE_MAX];
    size_t len = 0;

    cr_assert_eq(mesh_announce_make(&a.pk, &a.sk, NOW_NS, obj, sizeof obj, &len), 0);
    for (size_t n = 0; n < DMSG_SIGNED_OBJECT_MIN; n++)
        cr_assert_eq(mesh_announce_parse(obj, n, &a.pk, NULL), DMSG_ESHORT, "length %zu", n);
    for (size_t n = DMSG_SIGNED_OBJECT_MIN; n < len; n++)
        cr_assert_neq(mesh_announce_parse(obj, n, &a.pk, NULL), 0, "length %zu", n);
}

Test(mesh_announce, zero_timestamp_is_refused)
{
    key a = make_key(1);
    uint8_t obj[MESH_ANNOUNCE_MAX];
    size_t len = 0;

    cr_assert_eq(mesh_announce_make(&a.pk, &a.sk, 0, obj, sizeof obj, &len), 0);
    cr_assert_eq(mesh_announce_parse(obj, len, &a.pk, NULL), DMSG_EINVAL);
}

/* Gob is lenient: a client's first object (a StreamRequest) decodes as an announce without
 * SrcPK and must never pass for one, even signed by the session's key. */
Test(mesh_announce, stream_request_is_no_announce)
{
    key a = make_key(1), b = make_key(2);
    dmsg_stream_request req;
    uint8_t obj[1024];
    size_t len = 0;

    memset(&req, 0, sizeof req);
    req.src.pk = a.pk;
    req.src.port = 1;
    req.dst.pk = b.pk;
    req.dst.port = 2;
    cr_assert_eq(dmsg_stream_request_make(&req, NOW_NS, &a.sk, obj, sizeof obj, &len), 0);
    cr_assert_eq(mesh_announce_parse(obj, len, &a.pk, NULL), DMSG_EKEY);
}

Test(mesh_announce, too_small_buffer)
{
    key a = make_key(1);
    uint8_t obj[MESH_ANNOUNCE_MAX];
    size_t len = 0;

    cr_assert_eq(mesh_announce_make(&a.pk, &a.sk, NOW_NS, obj, 40, &len), DMSG_ETOOBIG);
    cr_assert_eq(mesh_announce_make(&a.pk, &a.sk, NOW_NS, obj, 80, &len), DMSG_ETOOBIG);
}

static size_t announce_of(const key *k, uint8_t *obj)
{
    size_t len = 0;

    cr_assert_eq(mesh_announce_make(&k->pk, &k->sk, NOW_NS, obj, MESH_ANNOUNCE_MAX, &len), 0);
    return len;
}

Test(mesh_announce, answers_round_trip)
{
    key a = make_key(1), b = make_key(2);
    uint8_t ann[MESH_ANNOUNCE_MAX], resp[MESH_ANSWER_MAX];
    size_t ann_len = announce_of(&a, ann), resp_len = 0;
    bool accepted = false;
    dmsg_stream_response parsed;
    uint16_t code = 0;

    for (int want = 0; want < 2; want++) {
        cr_assert_eq(mesh_announce_answer(ann, ann_len, want, &b.sk, resp, sizeof resp,
                                          &resp_len), 0);
        /* An ordinary StreamResponse, as the reference reads it (ObtainStreamResponse). */
        cr_assert_eq(dmsg_stream_response_parse(&parsed, resp, resp_len, &code), 0);
        cr_assert_eq(parsed.accepted, want);
        cr_assert_eq(mesh_announce_check_answer(resp, resp_len, ann, ann_len, &b.pk,
                                                &accepted), 0);
        cr_assert_eq(accepted, want);
    }
}

Test(mesh_announce, answer_to_another_announce_is_refused)
{
    key a = make_key(1), b = make_key(2), c = make_key(3);
    uint8_t ann[MESH_ANNOUNCE_MAX], other[MESH_ANNOUNCE_MAX], resp[MESH_ANSWER_MAX];
    size_t ann_len = announce_of(&a, ann), other_len = announce_of(&c, other), resp_len = 0;
    bool accepted;

    cr_assert_eq(mesh_announce_answer(other, other_len, true, &b.sk, resp, sizeof resp,
                                      &resp_len), 0);
    cr_assert_eq(mesh_announce_check_answer(resp, resp_len, ann, ann_len, &b.pk, &accepted),
                 DMSG_EMAC);
}

Test(mesh_announce, answer_signed_by_another_key_is_refused)
{
    key a = make_key(1), b = make_key(2), c = make_key(3);
    uint8_t ann[MESH_ANNOUNCE_MAX], resp[MESH_ANSWER_MAX];
    size_t ann_len = announce_of(&a, ann), resp_len = 0;
    bool accepted;

    cr_assert_eq(mesh_announce_answer(ann, ann_len, true, &c.sk, resp, sizeof resp, &resp_len),
                 0);
    cr_assert_eq(mesh_announce_check_answer(resp, resp_len, ann, ann_len, &b.pk, &accepted),
                 DMSG_ESIG);
}

Test(mesh_announce, truncated_answers_are_refused)
{
    key a = make_key(1), b = make_key(2);
    uint8_t ann[MESH_ANNOUNCE_MAX], resp[MESH_ANSWER_MAX];
    size_t ann_len = announce_of(&a, ann), resp_len = 0;
    bool accepted;

    cr_assert_eq(mesh_announce_answer(ann, ann_len, true, &b.sk, resp, sizeof resp, &resp_len),
                 0);
    for (size_t n = 0; n < DMSG_SIGNED_OBJECT_MIN; n++)
        cr_assert_eq(mesh_announce_check_answer(resp, n, ann, ann_len, &b.pk, &accepted),
                     DMSG_ESHORT, "length %zu", n);
    for (size_t n = DMSG_SIGNED_OBJECT_MIN; n < resp_len; n++)
        cr_assert_neq(mesh_announce_check_answer(resp, n, ann, ann_len, &b.pk, &accepted), 0,
                      "length %zu", n);
}

/* ---- caches ---- */

static dmsg_pk pk_n(unsigned n)
{
    dmsg_pk pk;

    memset(&pk, 0, sizeof pk);
    pk.b[0] = 0x02;
    for (size_t i = 1; i < sizeof pk.b; i++)
        pk.b[i] = (uint8_t)((n * 2654435761u) >> ((i % 4) * 8)) ^ (uint8_t)(i * n);
    return pk;
}

Test(mesh_cache, put_get_and_expiry)
{
    struct mesh_cache c;
    dmsg_pk k = pk_n(1), v = pk_n(2);
    const struct mesh_cache_entry *e;

    cr_assert_eq(mesh_cache_init(&c, 16, 1000), 0);
    cr_assert_null(mesh_cache_get(&c, &k, 0));
    mesh_cache_put(&c, &k, &v, 100);
    e = mesh_cache_get(&c, &k, 1099);
    cr_assert_not_null(e);
    cr_assert(dmsg_pk_equal(&e->value, &v));
    cr_assert_null(mesh_cache_get(&c, &k, 1100), "expired at put + ttl");
    /* A refresh moves the expiry. */
    mesh_cache_put(&c, &k, &v, 1000);
    cr_assert_not_null(mesh_cache_get(&c, &k, 1999));
    mesh_cache_remove(&c, &k);
    cr_assert_null(mesh_cache_get(&c, &k, 1001));
    mesh_cache_free(&c);
}

Test(mesh_cache, remove_by_value)
{
    struct mesh_cache c;
    dmsg_pk peer_a = pk_n(1000), peer_b = pk_n(1001);

    cr_assert_eq(mesh_cache_init(&c, 64, 10000), 0);
    for (unsigned i = 0; i < 20; i++) {
        dmsg_pk k = pk_n(i);
        mesh_cache_put(&c, &k, i % 2 ? &peer_a : &peer_b, 0);
    }
    size_t before = mesh_cache_count(&c, 1);
    mesh_cache_remove_value(&c, &peer_a);
    for (unsigned i = 0; i < 20; i++) {
        dmsg_pk k = pk_n(i);
        const struct mesh_cache_entry *e = mesh_cache_get(&c, &k, 1);
        if (i % 2)
            cr_assert_null(e, "entry %u of the removed peer", i);
        else if (e != NULL)
            cr_assert(dmsg_pk_equal(&e->value, &peer_b));
    }
    cr_assert_lt(mesh_cache_count(&c, 1), before);
    mesh_cache_free(&c);
}

Test(mesh_cache, stays_bounded_and_keeps_the_freshest)
{
    struct mesh_cache c;

    cr_assert_eq(mesh_cache_init(&c, 64, 1000000), 0);
    for (unsigned i = 0; i < 10000; i++) {
        dmsg_pk k = pk_n(i);
        mesh_cache_put(&c, &k, NULL, i);
    }
    cr_assert_leq(mesh_cache_count(&c, 10000), 64);
    cr_assert_geq(mesh_cache_count(&c, 10000), 32, "most slots hold something");
    /* The last key put is always there: it replaced the older entry of its set. */
    dmsg_pk last = pk_n(9999);
    cr_assert_not_null(mesh_cache_get(&c, &last, 10000));
    mesh_cache_clear(&c);
    cr_assert_eq(mesh_cache_count(&c, 10000), 0);
    mesh_cache_free(&c);
}

Test(mesh_cache, set_of_two_replaces_the_entry_expiring_first)
{
    struct mesh_cache c;
    dmsg_pk keys[3];
    unsigned found = 0;

    /* One set only: every key competes for the same two slots. */
    cr_assert_eq(mesh_cache_init(&c, 2, 1000), 0);
    cr_assert_eq(c.sets, 1);
    for (unsigned i = 0; i < 3; i++)
        keys[i] = pk_n(i + 1);
    mesh_cache_put(&c, &keys[0], NULL, 0);
    mesh_cache_put(&c, &keys[1], NULL, 10);
    mesh_cache_put(&c, &keys[2], NULL, 20);
    cr_assert_null(mesh_cache_get(&c, &keys[0], 30), "the oldest gave way");
    cr_assert_not_null(mesh_cache_get(&c, &keys[1], 30));
    cr_assert_not_null(mesh_cache_get(&c, &keys[2], 30));
    for (unsigned i = 0; i < 3; i++)
        found += mesh_cache_get(&c, &keys[i], 30) != NULL;
    cr_assert_eq(found, 2);
    mesh_cache_free(&c);
}

/* ---- the peer table and its admin interface, on a real loop and store (no server: links
 * only dial, towards ports where nobody listens) ---- */

struct fixture {
    char dir[64];
    char db[96];
    uv_loop_t loop;
    struct store *store;
    dmsg_identity id;
    struct dmsgd_log log;
    struct mesh_options opt;
    struct mesh *mesh;
    unsigned events[4];
    unsigned removed_events;
    bool closed;
};

static void on_event(void *user, const struct mesh_event *ev)
{
    struct fixture *f = user;

    cr_assert_not_null(ev->peer);
    cr_assert_lt((unsigned)ev->type, 4u);
    f->events[ev->type]++;
}

/* A port nobody listens on: bound, never listened, closed. */
static unsigned dead_port(void)
{
    uv_loop_t loop;
    uv_tcp_t tcp;
    struct sockaddr_in sa;
    struct sockaddr_storage got;
    int len = sizeof got;

    uv_loop_init(&loop);
    uv_tcp_init(&loop, &tcp);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    cr_assert_eq(uv_tcp_bind(&tcp, (const struct sockaddr *)&sa, 0), 0);
    uv_tcp_getsockname(&tcp, (struct sockaddr *)&got, &len);
    uv_close((uv_handle_t *)&tcp, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return ntohs(((struct sockaddr_in *)&got)->sin_port);
}

static void fixture_open(struct fixture *f)
{
    struct store_error serr;
    key k = make_key(99);

    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/dmsg-mesh-XXXXXX");
    cr_assert_not_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof f->db, "%s/dmsgd.db", f->dir);
    cr_assert_eq(store_open(&f->store, f->db, NULL, &serr), 0, "%s", serr.message);
    cr_assert_eq(uv_loop_init(&f->loop), 0);
    f->id.pk = k.pk;
    f->id.sk = k.sk;
    f->id.rng = dmsg_rng_system();
    log_init(&f->log);
    f->log.level = LOG_LEVEL_ERROR;
    mesh_options_default(&f->opt);
    f->opt.backoff_initial_ms = 20;
    f->opt.backoff_max_ms = 80;
}

static void on_mesh_done(void *arg)
{
    ((struct fixture *)arg)->closed = true;
}

static void fixture_start_mesh(struct fixture *f, const struct config_peer *peers, size_t n)
{
    char err[256] = "";

    cr_assert_eq(mesh_init(&f->loop, &f->id, f->store, &f->opt, &f->log, &f->mesh), 0);
    cr_assert_eq(mesh_subscribe(f->mesh, on_event, f), 0);
    cr_assert_eq(mesh_subscribe(f->mesh, on_event, f), DMSG_EEXIST);
    cr_assert_eq(mesh_start(f->mesh, peers, n, false, NULL, err, sizeof err), 0, "%s", err);
}

static void fixture_stop_mesh(struct fixture *f)
{
    f->closed = false;
    mesh_close(f->mesh, on_mesh_done, f);
    while (!f->closed)
        uv_run(&f->loop, UV_RUN_ONCE);
    f->mesh = NULL;
}

static void fixture_close(struct fixture *f)
{
    uv_run(&f->loop, UV_RUN_NOWAIT);
    cr_assert_eq(uv_loop_close(&f->loop), 0, "the mesh left handles open");
    store_close(f->store);
    unlink(f->db);
    char wal[128];
    snprintf(wal, sizeof wal, "%s-wal", f->db);
    unlink(wal);
    snprintf(wal, sizeof wal, "%s-shm", f->db);
    unlink(wal);
    rmdir(f->dir);
}

struct source_count {
    unsigned config, admin;
};

static int count_source(void *user, const struct store_peer *p)
{
    struct source_count *c = user;

    if (p->source == STORE_PEER_CONFIG)
        c->config++;
    else if (p->source == STORE_PEER_ADMIN)
        c->admin++;
    return 0;
}

static struct source_count stored(struct fixture *f)
{
    struct source_count c = {0, 0};

    cr_assert_eq(store_peer_list(f->store, NULL, count_source, &c), 0);
    return c;
}

static void run_for(struct fixture *f, uint64_t ms)
{
    uint64_t end = uv_now(&f->loop) + ms;

    while (uv_now(&f->loop) < end) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(2000);
        uv_update_time(&f->loop);
    }
}

Test(mesh_peers, admin_interface_and_persistence)
{
    struct fixture f;
    struct config_peer cp;
    struct mesh_peer_info info;
    char addr[32], err[256];
    key cfg_peer = make_key(7), admin_peer = make_key(8), other = make_key(9);

    fixture_open(&f);
    snprintf(addr, sizeof addr, "127.0.0.1:%u", dead_port());
    memset(&cp, 0, sizeof cp);
    cp.public_key = cfg_peer.pk;
    snprintf(cp.address, sizeof cp.address, "%s", addr);
    fixture_start_mesh(&f, &cp, 1);
    cr_assert_eq(stored(&f).config, 1, "config peers are mirrored into the store");
    cr_assert_eq(mesh_peer_count(f.mesh), 1);
    cr_assert(mesh_is_peer(f.mesh, &cfg_peer.pk));

    /* Adding: stored first, then linked. */
    cr_assert_eq(mesh_peer_add(f.mesh, &admin_peer.pk, addr, "second relay", &info, err,
                               sizeof err), 0, "%s", err);
    cr_assert_eq(info.source, STORE_PEER_ADMIN);
    cr_assert_str_eq(info.note, "second relay");
    cr_assert_eq(info.state, MESH_LINK_CONNECTING);
    cr_assert_eq(stored(&f).admin, 1);
    cr_assert_eq(f.events[MESH_EVENT_PEER_ADDED], 2);

    /* Refusals, each with its code and a message naming the value. */
    cr_assert_eq(mesh_peer_add(f.mesh, &admin_peer.pk, addr, NULL, NULL, err, sizeof err),
                 DMSG_EEXIST);
    cr_assert(strstr(err, "admin") != NULL, "%s", err);
    cr_assert_eq(mesh_peer_add(f.mesh, &cfg_peer.pk, addr, NULL, NULL, err, sizeof err),
                 DMSG_EEXIST);
    cr_assert(strstr(err, "config") != NULL, "%s", err);
    cr_assert_eq(mesh_peer_add(f.mesh, &f.id.pk, addr, NULL, NULL, err, sizeof err),
                 DMSG_EPERM);
    cr_assert_eq(mesh_peer_add(f.mesh, &other.pk, "no-port", NULL, NULL, err, sizeof err),
                 DMSG_EINVAL);
    cr_assert(strstr(err, "no-port") != NULL, "%s", err);
    cr_assert_eq(mesh_peer_add(f.mesh, &other.pk, ":8081", NULL, NULL, err, sizeof err),
                 DMSG_EINVAL);
    cr_assert_eq(mesh_peer_add(f.mesh, &other.pk, addr, "two\nlines", NULL, err, sizeof err),
                 DMSG_EINVAL);
    cr_assert_eq(mesh_peer_remove(f.mesh, &cfg_peer.pk, err, sizeof err), DMSG_EPERM);
    cr_assert(strstr(err, "config file") != NULL, "%s", err);
    cr_assert_eq(mesh_peer_remove(f.mesh, &other.pk, err, sizeof err), DMSG_ENOTFOUND);
    cr_assert_eq(mesh_peer_count(f.mesh), 2);

    /* Links to a dead port fail and back off; each failure is recorded. */
    run_for(&f, 400);
    cr_assert_eq(mesh_peer_get(f.mesh, &cfg_peer.pk, &info), 0);
    cr_assert_geq(info.attempts, 2, "attempts %u", info.attempts);
    cr_assert_neq(info.last_error, 0);
    cr_assert(info.last_error_text[0] != '\0');
    cr_assert_eq(info.reconnects, 0);
    cr_assert_eq(mesh_peers_up(f.mesh), 0);
    cr_assert_gt(f.events[MESH_EVENT_LINK_STATE], 2);
    if (info.state == MESH_LINK_DOWN)
        cr_assert_geq(info.next_attempt_ms, info.since_ms);

    /* Removing: gone from the store and the table, an event says so. */
    cr_assert_eq(mesh_peer_remove(f.mesh, &admin_peer.pk, err, sizeof err), 0, "%s", err);
    cr_assert_eq(stored(&f).admin, 0);
    cr_assert_eq(mesh_peer_get(f.mesh, &admin_peer.pk, &info), DMSG_ENOTFOUND);
    cr_assert_eq(f.events[MESH_EVENT_PEER_REMOVED], 1);
    cr_assert_eq(mesh_peer_remove(f.mesh, &admin_peer.pk, err, sizeof err), DMSG_ENOTFOUND);

    /* An admin peer outlives a restart; a config peer follows the file. */
    cr_assert_eq(mesh_peer_add(f.mesh, &other.pk, addr, NULL, NULL, err, sizeof err), 0);
    fixture_stop_mesh(&f);
    fixture_start_mesh(&f, NULL, 0);
    cr_assert_eq(stored(&f).config, 0);
    cr_assert_eq(stored(&f).admin, 1);
    cr_assert(mesh_is_peer(f.mesh, &other.pk));
    cr_assert(!mesh_is_peer(f.mesh, &cfg_peer.pk));
    fixture_stop_mesh(&f);
    fixture_close(&f);
}

Test(mesh_peers, reload_follows_the_config_file)
{
    struct fixture f;
    struct config_peer cp[2];
    struct mesh_peer_info info;
    char addr[32], err[256];
    key p1 = make_key(11), p2 = make_key(12);

    fixture_open(&f);
    snprintf(addr, sizeof addr, "127.0.0.1:%u", dead_port());
    memset(cp, 0, sizeof cp);
    cp[0].public_key = p1.pk;
    snprintf(cp[0].address, sizeof cp[0].address, "%s", addr);
    cp[1].public_key = p2.pk;
    snprintf(cp[1].address, sizeof cp[1].address, "%s", addr);
    fixture_start_mesh(&f, cp, 1);
    /* An admin peer that later appears in the file becomes a config peer. */
    cr_assert_eq(mesh_peer_add(f.mesh, &p2.pk, addr, NULL, NULL, err, sizeof err), 0);
    cr_assert_eq(mesh_reload(f.mesh, &cp[1], 1, false), 0);
    cr_assert(!mesh_is_peer(f.mesh, &p1.pk), "dropped from the file: removed");
    cr_assert_eq(mesh_peer_get(f.mesh, &p2.pk, &info), 0);
    cr_assert_eq(info.source, STORE_PEER_CONFIG);
    cr_assert_eq(stored(&f).config, 1);
    cr_assert_eq(stored(&f).admin, 0);
    cr_assert_eq(mesh_peer_remove(f.mesh, &p2.pk, err, sizeof err), DMSG_EPERM);
    /* A changed address redials at once. */
    snprintf(cp[1].address, sizeof cp[1].address, "127.0.0.1:%u", dead_port());
    cr_assert_eq(mesh_reload(f.mesh, &cp[1], 1, false), 0);
    cr_assert_eq(mesh_peer_get(f.mesh, &p2.pk, &info), 0);
    cr_assert_str_eq(info.address, cp[1].address);
    run_for(&f, 100);
    fixture_stop_mesh(&f);
    fixture_close(&f);
}

Test(mesh_peers, forwarding_order_without_sessions)
{
    struct fixture f;
    char addr[32], err[256];
    key p1 = make_key(21), dst = make_key(22);
    dmsg_session *hop = NULL;
    uint32_t timeout = 0;

    fixture_open(&f);
    snprintf(addr, sizeof addr, "127.0.0.1:%u", dead_port());
    fixture_start_mesh(&f, NULL, 0);
    /* No peers: nobody to ask. */
    cr_assert_eq(mesh_next_hop(f.mesh, &dst.pk, NULL, 0, &hop, &timeout), DMSG_ENOTFOUND);
    cr_assert_eq(mesh_peer_add(f.mesh, &p1.pk, addr, NULL, NULL, err, sizeof err), 0);
    /* A peer without a session is no hop: attempt 0 names nothing, attempt 1 ends the search,
     * and since nobody was asked the miss is not remembered. */
    cr_assert_eq(mesh_next_hop(f.mesh, &dst.pk, NULL, 0, &hop, &timeout), 0);
    cr_assert_null(hop);
    cr_assert_eq(mesh_next_hop(f.mesh, &dst.pk, NULL, 1, &hop, &timeout), DMSG_ENOTFOUND);
    cr_assert_eq(mesh_next_hop(f.mesh, &dst.pk, NULL, 0, &hop, &timeout), 0);
    struct mesh_stats st;
    mesh_get_stats(f.mesh, &st);
    cr_assert_eq(st.miss_cache_hits, 0);
    cr_assert_eq(st.peers, 1);
    fixture_stop_mesh(&f);
    fixture_close(&f);
}
