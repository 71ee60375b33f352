/* Private state of the mesh, shared by mesh.c (peer table, hooks, admin interface),
 * mesh_link.c (outbound links) and mesh_discovered.c (accept_discovered_peers). */
#ifndef DMSGD_MESH_INTERNAL_H
#define DMSGD_MESH_INTERNAL_H

#include "dmsg/disc_client.h"
#include "dmsg/http_client.h"
#include "mesh.h"
#include "mesh_announce.h"
#include "mesh_cache.h"

#define MESH_ANSWER_FRAME_MAX (MESH_ANSWER_MAX + 24) /* nonce(8) + tag(16) around the object */

struct mesh_peer {
    struct mesh *mesh;
    struct mesh_peer *next;            /* m->peers (ordered by key) or m->graveyard */
    dmsg_pk pk;
    char pk_hex[DMSG_PK_HEX_LEN + 1];
    char address[CONFIG_ADDR_MAX + 1];
    enum store_peer_source source;
    int64_t added_at_ms;
    char note[MESH_NOTE_MAX + 1];
    bool removed;                      /* off the table; freed once its handles are closed */

    /* The outbound link. */
    enum mesh_link_state state;
    int64_t since_ms;
    dmsg_session *link;                /* while connecting or up */
    bool link_ready;                   /* the handshake finished */
    struct relay_session link_rs;      /* streams the peer opens on our link */
    uv_getaddrinfo_t resolver;
    bool resolving;
    uv_timer_t timer;                  /* redial (down) or the announce deadline (up) */
    bool timer_closed;
    uint64_t backoff_ms;               /* the next wait before jitter */
    uint64_t up_at_ms;                 /* loop time the link came up */
    bool redial_now;                   /* the address changed: redial without waiting */
    char remote_address[CONFIG_ADDR_MAX + 1];
    int last_error;
    char last_error_text[MESH_ERROR_MAX];
    int64_t last_error_ms;
    uint32_t attempts;
    uint64_t reconnects;
    bool ever_up;
    int64_t next_attempt_ms;

    /* Our PeerAnnounce on the current link. */
    enum mesh_announce_state announce;
    bool announce_skip;                /* the peer dropped a link while our announce was open */
    dmsg_stream *ann_stream;
    uint8_t ann_obj[MESH_ANNOUNCE_MAX];
    size_t ann_len;
    uint8_t ann_prefix[2];
    size_t ann_prefix_have;
    uint8_t ann_frame[MESH_ANSWER_FRAME_MAX];
    size_t ann_frame_len, ann_frame_have;

    /* The peer's own session to us. */
    int64_t inbound_since_ms;

    uint64_t fwd_ok, fwd_miss;
    uint64_t bytes_in_past, bytes_out_past; /* of links already closed */
};

struct mesh_subscriber {
    mesh_event_fn fn;
    void *user;
};

struct mesh {
    uv_loop_t *loop;
    const dmsg_identity *identity;
    struct store *store;
    struct mesh_options opt;
    const struct dmsgd_log *log;
    struct server *server;
    struct relay *relay;

    struct mesh_peer *peers;           /* ordered by key */
    size_t n_peers;
    struct mesh_peer *graveyard;
    struct mesh_cache routes;          /* dst -> the peer that delivered */
    struct mesh_cache misses;          /* dst that no peer had */
    struct mesh_subscriber subs[MESH_MAX_SUBSCRIBERS];
    size_t n_subs;
    struct mesh_stats stats;
    bool started, closing;
    void (*on_done)(void *arg);
    void *on_done_arg;

    /* accept_discovered_peers */
    bool accept_discovered;
    char discovery_url[CONFIG_URL_MAX + 1];
    dmsg_http http;
    bool http_open;
    dmsg_disc_client disc;
    dmsg_disc_req *disc_req;
    uv_timer_t disc_timer;
    bool disc_timer_open;
};

/* Wall-clock Unix milliseconds. */
int64_t mesh_now_ms(void);

/* mesh.c */
struct mesh_peer *mesh_find_peer(const struct mesh *m, const dmsg_pk *pk);
void mesh_peer_info_fill(const struct mesh_peer *p, struct mesh_peer_info *out);
void mesh_emit(struct mesh *m, enum mesh_event_type type, const struct mesh_peer *p,
               enum mesh_link_state previous, const char *error);
/* Adds a peer to the table and starts its link (the caller stored it). */
int mesh_peer_insert(struct mesh *m, const dmsg_pk *pk, const char *address,
                     enum store_peer_source source, int64_t added_at_ms, const char *note,
                     struct mesh_peer **out);
/* Frees graveyard peers whose handles are closed; finishes mesh_close when all are. */
void mesh_reap(struct mesh *m);

/* mesh_link.c */
/* Initialises p's timer (it lives as long as p). */
int mesh_link_init(struct mesh_peer *p);
void mesh_link_start(struct mesh_peer *p);
/* Closes the link's session (its streams go with it) without redialing. */
void mesh_link_close(struct mesh_peer *p, int err);
/* The address changed: close and redial at once. */
void mesh_link_restart(struct mesh_peer *p);
/* Stops everything of p (resolver, session, timer) for freeing; mesh_reap follows. */
void mesh_link_release(struct mesh_peer *p);
bool mesh_link_released(const struct mesh_peer *p);
/* The session that carries forwarded requests to p: our link when up, else its inbound one. */
dmsg_session *mesh_peer_session(const struct mesh_peer *p);

/* mesh_discovered.c */
int mesh_discovered_start(struct mesh *m);
void mesh_discovered_stop(struct mesh *m);
bool mesh_discovered_closed(const struct mesh *m);

#endif
