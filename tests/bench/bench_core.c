/* Benchmarks of the protocol cores, one core, figures printed (never asserted):
 *   noise transport seal+open MiB/s at 16 KiB and 1 KiB beside raw libsodium ChaCha20-Poly1305,
 *   yamux frames parsed per second, gob StreamRequest encode+decode per second,
 *   signatures signed and verified per second.
 * Each figure is the median of several runs. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dmsg/cipher.h"
#include "dmsg/error.h"
#include "dmsg/noise.h"
#include "dmsg/wire.h"
#include "dmsg/yamux.h"

#define RUNS 5

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

static void die(const char *what, int err)
{
    fprintf(stderr, "bench_core: %s: %s\n", what, dmsg_strerror(err));
    exit(1);
}

/* Seal then open every frame, as one direction of a session does; returns MiB/s of plaintext. */
static double noise_run(size_t frame, size_t total)
{
    uint8_t key[DMSG_NOISE_KEY_LEN];
    randombytes_buf(key, sizeof key);
    dmsg_noise_tx tx;
    dmsg_noise_rx rx;
    dmsg_noise_tx_init(&tx, key);
    dmsg_noise_rx_init(&rx, key, DMSG_NOISE_INCREASING);
    uint8_t *buf = malloc(frame + DMSG_NOISE_OVERHEAD);
    uint8_t *pt = buf + DMSG_NOISE_NONCE_LEN;
    memset(pt, 0x5a, frame);
    double t0 = now_s();
    for (size_t done = 0; done < total; done += frame) {
        size_t sealed, opened;
        uint8_t *out;
        int err = dmsg_noise_seal(&tx, pt, frame, buf, frame + DMSG_NOISE_OVERHEAD, &sealed);
        if (err == 0)
            err = dmsg_noise_open(&rx, buf, sealed, &out, &opened);
        if (err < 0)
            die("noise", err);
    }
    double dt = now_s() - t0;
    free(buf);
    return (double)total / dt / (1024.0 * 1024.0);
}

/* The same work with libsodium directly: encrypt then decrypt in place, same nonce layout. */
static double raw_run(size_t frame, size_t total)
{
    uint8_t key[crypto_aead_chacha20poly1305_IETF_KEYBYTES];
    randombytes_buf(key, sizeof key);
    uint8_t *buf = malloc(frame + crypto_aead_chacha20poly1305_IETF_ABYTES);
    memset(buf, 0x5a, frame);
    uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES] = { 0 };
    uint64_t n = 0;
    double t0 = now_s();
    for (size_t done = 0; done < total; done += frame) {
        n++;
        memcpy(nonce + 4, &n, sizeof n);
        unsigned long long clen, plen;
        crypto_aead_chacha20poly1305_ietf_encrypt(buf, &clen, buf, frame, NULL, 0, NULL, nonce,
                                                  key);
        if (crypto_aead_chacha20poly1305_ietf_decrypt(buf, &plen, NULL, buf, clen, NULL, 0,
                                                      nonce, key) != 0)
            die("raw decrypt", DMSG_EMAC);
    }
    double dt = now_s() - t0;
    free(buf);
    return (double)total / dt / (1024.0 * 1024.0);
}

static void bench_noise(void)
{
    static const size_t frames[] = { 16384, 1024 };
    const size_t total = 256u << 20;
    for (size_t f = 0; f < 2; f++) {
        double ours[RUNS], raw[RUNS];
        for (int r = 0; r < RUNS; r++) {
            ours[r] = noise_run(frames[f], total);
            raw[r] = raw_run(frames[f], total);
        }
        double a = median(ours, RUNS), b = median(raw, RUNS);
        printf("noise seal+open %5zu B frames: %8.1f MiB/s   raw libsodium: %8.1f MiB/s   "
               "ratio %.3f\n", frames[f], a, b, a / b);
    }
}

/* A server-role session parses a stream of data frames of 1 KiB and window updates. */
static void bench_yamux(void)
{
    enum { FRAMES = 20000, PAYLOAD = 1024 };
    size_t len = (size_t)FRAMES * (DMSG_YAMUX_HDR_LEN + PAYLOAD);
    uint8_t *wire = calloc(1, len);
    uint8_t *p = wire;
    /* stream 1: SYN, then data frames within the window, credited by consume. */
    dmsg_yamux_hdr syn = { 0, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_SYN, 1, 0 };
    dmsg_yamux_hdr_encode(&syn, p);
    p += DMSG_YAMUX_HDR_LEN + PAYLOAD; /* the rest of the first slot is a zero Data frame header */
    for (int i = 1; i < FRAMES; i++) {
        dmsg_yamux_hdr d = { 0, DMSG_YAMUX_DATA, 0, 1, PAYLOAD };
        dmsg_yamux_hdr_encode(&d, p);
        p += DMSG_YAMUX_HDR_LEN + PAYLOAD;
    }
    /* the gap after the SYN: a Data frame of PAYLOAD - 12 bytes on stream 1 */
    dmsg_yamux_hdr gap = { 0, DMSG_YAMUX_DATA, 0, 1, PAYLOAD - DMSG_YAMUX_HDR_LEN };
    dmsg_yamux_hdr_encode(&gap, wire + DMSG_YAMUX_HDR_LEN);

    double rates[RUNS];
    for (int r = 0; r < RUNS; r++) {
        dmsg_yamux y;
        dmsg_yamux_config cfg;
        dmsg_yamux_config_default(&cfg);
        cfg.enable_keepalive = false;
        if (dmsg_yamux_init(&y, DMSG_YAMUX_SERVER, &cfg, 0) < 0)
            die("yamux init", DMSG_EINVAL);
        long frames = 0;
        double t0 = now_s();
        const uint8_t *in = wire;
        size_t left = len;
        for (;;) {
            size_t used;
            dmsg_yamux_event ev;
            int err = dmsg_yamux_feed(&y, in, left, 0, &used, &ev);
            if (err < 0)
                die("yamux feed", err);
            in += used;
            left -= used;
            if (ev.type == DMSG_YAMUX_EV_NONE)
                break;
            if (ev.type == DMSG_YAMUX_EV_OPENED) {
                uint8_t f[DMSG_YAMUX_HDR_LEN];
                dmsg_yamux_accept(&y, ev.stream_id, f);
            } else if (ev.type == DMSG_YAMUX_EV_DATA) {
                uint8_t f[DMSG_YAMUX_HDR_LEN];
                size_t flen;
                dmsg_yamux_consume(&y, ev.stream_id, (uint32_t)ev.len, f, &flen);
                frames++;
            }
        }
        rates[r] = (double)(frames + 1) / (now_s() - t0);
        dmsg_yamux_destroy(&y);
    }
    printf("yamux frames parsed (1 KiB data + consume): %.2f M frames/s\n",
           median(rates, RUNS) / 1e6);
    free(wire);
}

static void bench_signatures(void)
{
    dmsg_rng rng = dmsg_rng_system();
    dmsg_pk pk;
    dmsg_sk sk;
    dmsg_keypair_generate(&pk, &sk, &rng);
    uint8_t payload[200];
    randombytes_buf(payload, sizeof payload);
    enum { N = 4000 };
    double sign_rate[RUNS], verify_rate[RUNS];
    dmsg_sig sig;
    for (int r = 0; r < RUNS; r++) {
        double t0 = now_s();
        for (int i = 0; i < N; i++) {
            payload[0] = (uint8_t)i;
            if (dmsg_sign(&sig, &sk, payload, sizeof payload) < 0)
                die("sign", DMSG_ESIG);
        }
        sign_rate[r] = N / (now_s() - t0);
        t0 = now_s();
        for (int i = 0; i < N; i++) {
            if (dmsg_verify(&pk, &sig, payload, sizeof payload) < 0)
                die("verify", DMSG_ESIG);
        }
        verify_rate[r] = N / (now_s() - t0);
    }
    printf("signatures: %.0f signed/s, %.0f verified/s\n", median(sign_rate, RUNS),
           median(verify_rate, RUNS));
}

/* Encode a StreamRequest with a fresh encoder (as every dialer does) and decode it back. */
static void bench_gob(void)
{
    dmsg_rng rng = dmsg_rng_system();
    dmsg_stream_request req;
    memset(&req, 0, sizeof req);
    dmsg_sk sk;
    dmsg_keypair_generate(&req.src.pk, &sk, &rng);
    dmsg_keypair_generate(&req.dst.pk, &sk, &rng);
    req.src.port = 49153;
    req.dst.port = 80;
    req.timestamp = 1700000000000000000;
    uint8_t noise_msg[49];
    randombytes_buf(noise_msg, sizeof noise_msg);
    req.noise_msg.ptr = noise_msg;
    req.noise_msg.len = sizeof noise_msg;
    enum { N = 100000 };
    double rates[RUNS];
    uint8_t buf[1024];
    for (int r = 0; r < RUNS; r++) {
        double t0 = now_s();
        for (int i = 0; i < N; i++) {
            size_t len;
            int err = dmsg_stream_request_encode(&req, NULL, buf, sizeof buf, &len);
            if (err < 0)
                die("gob encode", err);
            dmsg_stream_request back;
            uint16_t code;
            /* parse expects a SignedObject: decode the gob behind a zero signature */
            uint8_t obj[DMSG_SIG_LEN + sizeof buf];
            memcpy(obj + DMSG_SIG_LEN, buf, len);
            err = dmsg_stream_request_parse(&back, obj, DMSG_SIG_LEN + len, &code);
            if (err < 0 || back.src.port != req.src.port)
                die("gob decode", err);
        }
        rates[r] = N / (now_s() - t0);
    }
    printf("gob StreamRequest encode+decode: %.0f per second\n", median(rates, RUNS));
}

int main(void)
{
    if (dmsg_cipher_init() < 0) {
        fprintf(stderr, "bench_core: libsodium failed to initialise\n");
        return 1;
    }
    bench_noise();
    bench_yamux();
    bench_gob();
    bench_signatures();
    return 0;
}
