/* The end-to-end stream core on outside bytes. The first input byte picks what the rest is:
 *   0: stream bytes for the reader, fed in pieces whose sizes come from the input;
 *   1: plaintext that is sealed and read back in pieces: it must come out unchanged;
 *   2: a response object for a fixed dialer (dmsg_e2e_dial_finish);
 *   3: a request object for a fixed listener (check, then accept or refuse).
 * Every DMSG_EWIRE must carry a wire code. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/e2e.h"
#include "dmsg/error.h"

static const uint8_t key[DMSG_NOISE_KEY_LEN] = {1, 2, 3, 4, 5, 6, 7, 8};
static uint8_t scratch[4 * DMSG_NOISE_CHUNK_MAX];
static uint8_t sealed[2 * 65536];

/* Fixed identities, so that seeds made once stay valid (deterministic signatures). */
static dmsg_pk dialer_pk, listener_pk;
static dmsg_sk dialer_sk, listener_sk;

static void fill_counter(void *ctx, uint8_t *out, size_t len)
{
    uint8_t *n = ctx;
    memset(out, 0, len);
    out[len - 1] = ++*n; /* small valid scalars: 1, 2, ... */
}

static bool ready(void)
{
    static int state;
    if (state)
        return state > 0;
    state = -1;
    if (dmsg_cipher_init() != 0)
        return false;
    dmsg_sha256(dialer_sk.b, (const uint8_t *)"fuzz_e2e dialer", 15);
    dmsg_sha256(listener_sk.b, (const uint8_t *)"fuzz_e2e listener", 17);
    if (dmsg_pk_from_sk(&dialer_pk, &dialer_sk) != 0 ||
        dmsg_pk_from_sk(&listener_pk, &listener_sk) != 0)
        return false;
    state = 1;
    return true;
}

static void check_code(int rc, uint16_t code)
{
    if ((rc == DMSG_EWIRE) != (code != 0))
        abort();
}

static void feed_reader(const uint8_t *data, size_t size)
{
    dmsg_noise_rx rx;
    dmsg_noise_rx_init(&rx, key, DMSG_NOISE_INCREASING);
    static dmsg_e2e_reader r;
    if (dmsg_e2e_reader_init(&r, &rx) != 0)
        abort();
    size_t step = size ? (size_t)data[0] * 17 + 1 : 1;
    for (size_t pos = 0; pos < size;) {
        size_t piece = size - pos < step ? size - pos : step;
        size_t used = 0, got = 0;
        int rc = dmsg_e2e_reader_feed(&r, data + pos, piece, &used, scratch, sizeof scratch,
                                      &got);
        if (rc != 0)
            return;
        if (used == 0 && got == 0)
            abort(); /* no progress */
        pos += used;
    }
}

static void round_trip(const uint8_t *data, size_t size)
{
    if (size > 65536 || size < 1)
        return;
    size_t step = (size_t)data[0] * 31 + 1;
    dmsg_noise_tx tx;
    dmsg_noise_tx_init(&tx, key);
    size_t len = 0;
    if (dmsg_noise_seal_stream(&tx, data, size, sealed, sizeof sealed, &len) != 0)
        abort();
    dmsg_noise_rx rx;
    dmsg_noise_rx_init(&rx, key, DMSG_NOISE_INCREASING);
    static dmsg_e2e_reader r;
    if (dmsg_e2e_reader_init(&r, &rx) != 0)
        abort();
    static uint8_t back[65536];
    size_t total = 0;
    for (size_t pos = 0; pos < len;) {
        size_t piece = len - pos < step ? len - pos : step;
        size_t used = 0, got = 0;
        if (dmsg_e2e_reader_feed(&r, sealed + pos, piece, &used, scratch, sizeof scratch,
                                 &got) != 0 || total + got > sizeof back)
            abort();
        memcpy(back + total, scratch, got);
        total += got;
        pos += used;
    }
    if (total != size || memcmp(back, data, size) != 0 || dmsg_e2e_reader_pending(&r) != 0)
        abort();
}

static void as_response(const uint8_t *data, size_t size)
{
    uint8_t counter = 0;
    dmsg_rng rng = {.fill = fill_counter, .ctx = &counter};
    static dmsg_e2e_dialer d;
    dmsg_addr src = {dialer_pk, 49153}, dst = {listener_pk, 80};
    if (dmsg_e2e_dial_begin(&d, &src, &dialer_sk, &dst, 1700000000000000000LL, &rng) != 0)
        abort();
    dmsg_noise_tx tx;
    dmsg_noise_rx rx;
    uint16_t code = 0;
    check_code(dmsg_e2e_dial_finish(&d, data, size, &tx, &rx, &code), code);
}

static void as_request(const uint8_t *data, size_t size)
{
    uint8_t counter = 100;
    dmsg_rng rng = {.fill = fill_counter, .ctx = &counter};
    dmsg_stream_request req;
    uint16_t code = 0;
    int rc = dmsg_e2e_request_check(&req, data, size, &listener_pk, &code);
    check_code(rc, code);
    if (rc != 0)
        return;
    static uint8_t out[DMSG_E2E_OBJECT_MAX];
    size_t len = 0;
    dmsg_noise_tx tx;
    dmsg_noise_rx rx;
    (void)dmsg_e2e_accept(&req, &listener_sk, &rng, out, sizeof out, &len, &tx, &rx);
    if (dmsg_e2e_refuse(&req, &listener_sk, DMSG_WIRE_REQ_NO_LISTENER, out, sizeof out, &len) !=
        0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready())
        abort();
    if (size < 1)
        return 0;
    switch (data[0] % 4) {
    case 0:
        feed_reader(data + 1, size - 1);
        break;
    case 1:
        round_trip(data + 1, size - 1);
        break;
    case 2:
        as_response(data + 1, size - 1);
        break;
    default:
        as_request(data + 1, size - 1);
        break;
    }
    return 0;
}
