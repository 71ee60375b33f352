/* libFuzzer harness for the mesh's PeerAnnounce checks (daemon/mesh_announce.c): the first object
 * of any session's stream that is not a valid StreamRequest reaches mesh_announce_parse, and the
 * answer to our own announce reaches mesh_announce_check_answer. Input: one mode byte, then the
 * object. Properties: no crash, no leak; an accepted announce carries a signature that verifies
 * against the session key; an accepted answer really answers our announce. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The daemon's files are not in dmsgcore, which harnesses link: compile them in. */
#include "../../daemon/mesh_announce.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The session key of the harness: the key of secret 0x01..0x20 (fixed so that seeds verify). */
static bool keys_ready;
static dmsg_pk session_pk;
static dmsg_sk session_sk;
static uint8_t our_announce[MESH_ANNOUNCE_MAX];
static size_t our_announce_len;

static void init_keys(void)
{
    if (keys_ready)
        return;
    if (dmsg_cipher_init() != 0)
        abort();
    for (size_t i = 0; i < sizeof session_sk.b; i++)
        session_sk.b[i] = (uint8_t)(i + 1);
    if (dmsg_pk_from_sk(&session_pk, &session_sk) != 0 ||
        mesh_announce_make(&session_pk, &session_sk, INT64_C(1775736000000000000), our_announce,
                           sizeof our_announce, &our_announce_len) != 0)
        abort();
    keys_ready = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t ts = 0;
    bool accepted = false;
    dmsg_sig sig;

    init_keys();
    if (size < 1)
        return 0;
    if (data[0] & 1) {
        if (mesh_announce_parse(data + 1, size - 1, &session_pk, &ts) == 0) {
            memcpy(sig.b, data + 1, DMSG_SIG_LEN);
            if (ts <= 0 || dmsg_verify(&session_pk, &sig, data + 1 + DMSG_SIG_LEN,
                                       size - 1 - DMSG_SIG_LEN) != 0)
                abort();
        }
    } else {
        if (mesh_announce_check_answer(data + 1, size - 1, our_announce, our_announce_len,
                                       &session_pk, &accepted) == 0) {
            memcpy(sig.b, data + 1, DMSG_SIG_LEN);
            if (dmsg_verify(&session_pk, &sig, data + 1 + DMSG_SIG_LEN,
                            size - 1 - DMSG_SIG_LEN) != 0)
                abort();
        }
    }
    return 0;
}
