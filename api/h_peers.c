/* /v1/peers: the mesh peers (list, add, one, remove), through mesh.h. A change is answered
 * only after the mesh committed it to the store. */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "dmsg/error.h"
#include "dmsgd.h"
#include "mesh.h"
#include "validate.h"

static json_t *link_json(const struct mesh_peer_info *p)
{
    bool up = p->state == MESH_LINK_UP;
    bool down = p->state == MESH_LINK_DOWN;
    return json_pack("{s:s,s:o,s:o,s:o,s:I,s:I,s:o,s:b,s:I}", "state",
                     mesh_link_state_name(p->state), "since",
                     api_json_time(p->since_ms > 0 ? p->since_ms : p->added_at_ms),
                     "remote_address", up ? api_json_str_or_null(p->remote_address) : json_null(),
                     "last_error", api_json_str_or_null(p->last_error_text), "attempts",
                     (json_int_t)p->attempts, "reconnects", (json_int_t)p->reconnects,
                     "next_attempt_at", down ? api_json_time_or_null(p->next_attempt_ms)
                                             : json_null(),
                     "inbound", p->inbound, "streams", (json_int_t)p->streams);
}

json_t *api_peer_json(const struct mesh_peer_info *p)
{
    return json_pack("{s:s,s:s,s:s,s:o,s:s,s:o}", "public_key", p->public_key_hex, "address",
                     p->address, "source", store_peer_source_name(p->source), "added_at",
                     api_json_time(p->added_at_ms), "note", p->note, "link", link_json(p));
}

static int add_to_array(void *user, const struct mesh_peer_info *p)
{
    json_t *j = api_peer_json(p);
    return j ? json_array_append_new(user, j) : -1;
}

void api_list_peers(struct api_req *r)
{
    json_t *peers = json_array();
    if (r->d->mesh && mesh_peer_list(r->d->mesh, add_to_array, peers) != 0) {
        json_decref(peers);
        api_problem(r, API_P_INTERNAL_ERROR, 0, NULL, "could not list the peers");
        return;
    }
    api_reply_json(r, 200, json_pack("{s:o}", "peers", peers));
}

/* The path's key: 0, or -1 after answering 400 invalid_public_key. */
static int path_key(struct api_req *r, dmsg_pk *pk, char hex[DMSG_PK_HEX_LEN + 1])
{
    char why[96];
    if (api_parse_public_key(r->param, pk, hex, why, sizeof why) == 0)
        return 0;
    api_problem(r, API_P_INVALID_PUBLIC_KEY, 400, NULL, "%s in the path: %s", why,
                "give the peer's 66-character hex public key");
    return -1;
}

static bool no_mesh(struct api_req *r)
{
    if (r->d->mesh)
        return false;
    api_problem(r, API_P_SHUTTING_DOWN, 503, NULL, "the mesh is not running");
    return true;
}

/* Validates a PeerCreate body; 0 or -1 after answering 422. */
static int check_create(struct api_req *r, dmsg_pk *pk, char hex[DMSG_PK_HEX_LEN + 1],
                        const char **address, const char **note)
{
    char why[128];
    json_t *jpk = json_object_get(r->body, "public_key");
    json_t *jaddr = json_object_get(r->body, "address");
    json_t *jnote = json_object_get(r->body, "note");
    if (api_parse_public_key(json_string_value(jpk), pk, hex, why, sizeof why) != 0) {
        api_problem(r, API_P_INVALID_PUBLIC_KEY, 422, "public_key", "public_key: %s", why);
        return -1;
    }
    *address = json_string_value(jaddr);
    if (strlen(*address) != json_string_length(jaddr) ||
        api_check_address(*address, why, sizeof why) != 0) {
        api_problem(r, API_P_INVALID_ADDRESS, 0, "address", "address: %s",
                    strlen(*address) != json_string_length(jaddr) ? "holds a NUL character"
                                                                  : why);
        return -1;
    }
    *note = jnote ? json_string_value(jnote) : NULL;
    if (*note && (strlen(*note) != json_string_length(jnote) ||
                  api_check_note(*note, strlen(*note), why, sizeof why) != 0)) {
        api_problem(r, API_P_INVALID_FIELD, 0, "note", "note: %s",
                    strlen(*note) != json_string_length(jnote) ? "holds a NUL character" : why);
        return -1;
    }
    if (dmsg_pk_equal(pk, &r->d->identity.pk)) {
        api_problem(r, API_P_PEER_IS_SELF, 0, "public_key",
                    "%s is this server's own key; a server cannot peer with itself", hex);
        return -1;
    }
    return 0;
}

static void answer_add_error(struct api_req *r, int rc, const dmsg_pk *pk, const char *hex,
                             const char *err)
{
    struct mesh_peer_info existing;
    switch (rc) {
    case DMSG_EEXIST:
        if (mesh_peer_get(r->d->mesh, pk, &existing) == 0)
            api_problem(r, API_P_PEER_EXISTS, 0, "public_key",
                        "%s is already a peer (source %s, address %s)", hex,
                        store_peer_source_name(existing.source), existing.address);
        else
            api_problem(r, API_P_PEER_EXISTS, 0, "public_key", "%s is already a peer", hex);
        break;
    case DMSG_EPERM:
        api_problem(r, API_P_PEER_IS_SELF, 0, "public_key", "%s is this server's own key", hex);
        break;
    case DMSG_ELIMIT:
        api_problem(r, API_P_PEER_LIMIT_REACHED, 0, NULL, "the peer table is full (%d peers);"
                    " remove a peer first", MESH_MAX_PEERS);
        break;
    case DMSG_EINVAL:
        if (strstr(err, "note"))
            api_problem(r, API_P_INVALID_FIELD, 0, "note", "%s", err);
        else
            api_problem(r, API_P_INVALID_ADDRESS, 0, "address", "%s", err);
        break;
    case DMSG_EIO:
        api_store_problem(r);
        break;
    case DMSG_ESTATE:
        api_problem(r, API_P_SHUTTING_DOWN, 0, NULL, "the mesh is closing");
        break;
    default:
        api_problem(r, API_P_INTERNAL_ERROR, 0, NULL, "adding the peer failed: %s",
                    dmsg_strerror(rc));
        break;
    }
}

void api_add_peer(struct api_req *r)
{
    dmsg_pk pk;
    char hex[DMSG_PK_HEX_LEN + 1];
    const char *address, *note;
    if (check_create(r, &pk, hex, &address, &note) != 0 || no_mesh(r))
        return;
    struct mesh_peer_info info;
    char err[256] = "";
    int rc = mesh_peer_add(r->d->mesh, &pk, address, note, &info, err, sizeof err);
    if (rc != 0) {
        answer_add_error(r, rc, &pk, hex, err);
        return;
    }
    api_store_ok(r);
    char location[96];
    snprintf(location, sizeof location, "/v1/peers/%s", hex);
    struct dmsg_httpd_header h = {"Location", location};
    log_info(&r->d->log, "admin: peer added", "public_key=%s address=%s", hex, address);
    api_reply_json_headers(r, 201, api_peer_json(&info), &h, 1);
}

void api_get_peer(struct api_req *r)
{
    dmsg_pk pk;
    char hex[DMSG_PK_HEX_LEN + 1];
    if (path_key(r, &pk, hex) != 0 || no_mesh(r))
        return;
    struct mesh_peer_info info;
    if (mesh_peer_get(r->d->mesh, &pk, &info) != 0) {
        api_problem(r, API_P_PEER_NOT_FOUND, 0, NULL, "%s is not a peer (see GET /v1/peers)",
                    hex);
        return;
    }
    api_reply_json(r, 200, api_peer_json(&info));
}

void api_remove_peer(struct api_req *r)
{
    dmsg_pk pk;
    char hex[DMSG_PK_HEX_LEN + 1];
    if (path_key(r, &pk, hex) != 0 || no_mesh(r))
        return;
    char err[256] = "";
    int rc = mesh_peer_remove(r->d->mesh, &pk, err, sizeof err);
    switch (rc) {
    case 0:
        api_store_ok(r);
        log_info(&r->d->log, "admin: peer removed", "public_key=%s", hex);
        api_reply_json(r, 204, NULL);
        break;
    case DMSG_ENOTFOUND:
        api_problem(r, API_P_PEER_NOT_FOUND, 0, NULL, "%s is not a peer", hex);
        break;
    case DMSG_EPERM:
        api_problem(r, API_P_PEER_FROM_CONFIG, 0, NULL,
                    "%s comes from the config file; remove it from \"peers\" there and restart"
                    " (or reload) dmsgd", hex);
        break;
    case DMSG_EIO:
        api_store_problem(r);
        break;
    default:
        api_problem(r, API_P_INTERNAL_ERROR, 0, NULL, "removing the peer failed: %s",
                    err[0] ? err : dmsg_strerror(rc));
        break;
    }
}
