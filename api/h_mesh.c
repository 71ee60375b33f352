/* GET /v1/mesh: this server's key and its peers as it sees them. */
#include "api.h"
#include "dmsgd.h"
#include "mesh.h"

static int add_peer(void *user, const struct mesh_peer_info *p)
{
    json_t *j = api_peer_json(p);
    return j ? json_array_append_new(user, j) : -1;
}

void api_get_mesh(struct api_req *r)
{
    json_t *peers = json_array();
    if (r->d->mesh && mesh_peer_list(r->d->mesh, add_peer, peers) != 0) {
        json_decref(peers);
        api_problem(r, API_P_INTERNAL_ERROR, 0, NULL, "could not list the peers");
        return;
    }
    /* Servers linking to us without being our peers cannot be told from clients: a session
     * proves only its key. They appear as client sessions in GET /v1/sessions. */
    api_reply_json(r, 200,
                   json_pack("{s:s,s:o,s:[]}", "public_key", r->d->public_key_hex, "peers",
                             peers, "inbound_only"));
}
