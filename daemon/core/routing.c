/* Route descriptors and routing rules: byte layouts, Go's String() and Summary()
 * (gob-and-rpc.md B.2). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "dmsg/error.h"
#include "dmsg/routing.h"

/* ---- byte helpers ---- */

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint16_t get_be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* snprintf into out with this module's conventions: NUL-terminated, DMSG_ETOOBIG if cut. */
static int finish_print(int n, size_t cap, size_t *len)
{
    if (n < 0)
        return DMSG_EINVAL;
    if ((size_t)n >= cap)
        return DMSG_ETOOBIG;
    if (len)
        *len = (size_t)n;
    return 0;
}

/* ---- route descriptor ---- */

enum { DESC_SRC_PK = 0, DESC_DST_PK = 33, DESC_SRC_PORT = 66, DESC_DST_PORT = 68 };

void dmsg_route_desc_pack(uint8_t desc[DMSG_ROUTE_DESC_LEN], const dmsg_route_addr *src,
                          const dmsg_route_addr *dst)
{
    memcpy(desc + DESC_SRC_PK, src->pk.b, DMSG_PK_LEN);
    memcpy(desc + DESC_DST_PK, dst->pk.b, DMSG_PK_LEN);
    put_be16(desc + DESC_SRC_PORT, src->port);
    put_be16(desc + DESC_DST_PORT, dst->port);
}

void dmsg_route_desc_unpack(const uint8_t desc[DMSG_ROUTE_DESC_LEN], dmsg_route_addr *src,
                            dmsg_route_addr *dst)
{
    memcpy(src->pk.b, desc + DESC_SRC_PK, DMSG_PK_LEN);
    memcpy(dst->pk.b, desc + DESC_DST_PK, DMSG_PK_LEN);
    src->port = get_be16(desc + DESC_SRC_PORT);
    dst->port = get_be16(desc + DESC_DST_PORT);
}

void dmsg_route_desc_invert(const uint8_t desc[DMSG_ROUTE_DESC_LEN],
                            uint8_t out[DMSG_ROUTE_DESC_LEN])
{
    dmsg_route_addr src, dst;
    dmsg_route_desc_unpack(desc, &src, &dst);
    dmsg_route_desc_pack(out, &dst, &src);
}

int dmsg_route_desc_string(const uint8_t desc[DMSG_ROUTE_DESC_LEN], char *out, size_t cap,
                           size_t *len)
{
    if (!desc || !out)
        return DMSG_EINVAL;
    dmsg_route_addr src, dst;
    char src_hex[DMSG_PK_HEX_LEN + 1], dst_hex[DMSG_PK_HEX_LEN + 1];
    dmsg_route_desc_unpack(desc, &src, &dst);
    dmsg_pk_to_hex(&src.pk, src_hex);
    dmsg_pk_to_hex(&dst.pk, dst_hex);
    /* Go names the destination the remote address and the source the local one */
    int n = snprintf(out, cap, "rAddr:%s:%u, lAddr:%s:%u", dst_hex, (unsigned)dst.port, src_hex,
                     (unsigned)src.port);
    return finish_print(n, cap, len);
}

void dmsg_tp_id_string(const uint8_t id[DMSG_TP_ID_LEN], char out[37])
{
    char hex[2 * DMSG_TP_ID_LEN + 1];
    dmsg_hex_encode(id, DMSG_TP_ID_LEN, hex);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
}

/* ---- rules ---- */

enum {
    RULE_KEEP_ALIVE = 0,
    RULE_TYPE = 8,
    RULE_KEY_ID = 9,
    RULE_BODY = DMSG_RULE_HEADER_LEN,
    /* after the descriptor (FWD) or the header (INTER): next route id, next transport id, then
     * 17 zero bytes, because the reference sizes this part as 4 + a public key's 33 bytes */
    RULE_NEXT_PART_LEN = 4 + DMSG_PK_LEN,
};

static void rule_header(dmsg_rule *rule, size_t len, int64_t keep_alive_ns, dmsg_rule_type type,
                        uint32_t key_route_id)
{
    memset(rule, 0, sizeof *rule);
    rule->len = (uint8_t)len;
    put_be64(rule->b + RULE_KEEP_ALIVE, keep_alive_ns < 0 ? 0 : (uint64_t)keep_alive_ns);
    rule->b[RULE_TYPE] = (uint8_t)type;
    put_be32(rule->b + RULE_KEY_ID, key_route_id);
}

static void put_next(uint8_t *p, uint32_t next_route_id, const uint8_t next_tp_id[DMSG_TP_ID_LEN])
{
    put_be32(p, next_route_id);
    memcpy(p + 4, next_tp_id, DMSG_TP_ID_LEN);
}

_Static_assert(DMSG_RULE_CONSUME_LEN == RULE_BODY + DMSG_ROUTE_DESC_LEN, "REV layout");
_Static_assert(DMSG_RULE_FORWARD_LEN == DMSG_RULE_CONSUME_LEN + RULE_NEXT_PART_LEN, "FWD layout");
_Static_assert(DMSG_RULE_INTERMEDIARY_LEN == RULE_BODY + RULE_NEXT_PART_LEN, "INTER layout");

void dmsg_rule_consume(dmsg_rule *rule, int64_t keep_alive_ns, uint32_t key_route_id,
                       const uint8_t desc[DMSG_ROUTE_DESC_LEN])
{
    rule_header(rule, DMSG_RULE_CONSUME_LEN, keep_alive_ns, DMSG_RULE_CONSUME, key_route_id);
    memcpy(rule->b + RULE_BODY, desc, DMSG_ROUTE_DESC_LEN);
}

void dmsg_rule_forward(dmsg_rule *rule, int64_t keep_alive_ns, uint32_t key_route_id,
                       uint32_t next_route_id, const uint8_t next_tp_id[DMSG_TP_ID_LEN],
                       const uint8_t desc[DMSG_ROUTE_DESC_LEN])
{
    rule_header(rule, DMSG_RULE_FORWARD_LEN, keep_alive_ns, DMSG_RULE_FORWARD, key_route_id);
    memcpy(rule->b + RULE_BODY, desc, DMSG_ROUTE_DESC_LEN);
    put_next(rule->b + DMSG_RULE_CONSUME_LEN, next_route_id, next_tp_id);
}

void dmsg_rule_intermediary(dmsg_rule *rule, int64_t keep_alive_ns, uint32_t key_route_id,
                            uint32_t next_route_id, const uint8_t next_tp_id[DMSG_TP_ID_LEN])
{
    rule_header(rule, DMSG_RULE_INTERMEDIARY_LEN, keep_alive_ns, DMSG_RULE_INTERMEDIARY,
                key_route_id);
    put_next(rule->b + RULE_BODY, next_route_id, next_tp_id);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

static int parse_next(const uint8_t *p, dmsg_rule_summary *out)
{
    if (!all_zero(p + 4 + DMSG_TP_ID_LEN, RULE_NEXT_PART_LEN - 4 - DMSG_TP_ID_LEN))
        return DMSG_EPROTO;
    out->next_route_id = get_be32(p);
    memcpy(out->next_tp_id, p + 4, DMSG_TP_ID_LEN);
    return 0;
}

int dmsg_rule_parse(const uint8_t *rule, size_t len, dmsg_rule_summary *out)
{
    if ((!rule && len) || !out)
        return DMSG_EINVAL;
    memset(out, 0, sizeof *out);
    if (len < DMSG_RULE_HEADER_LEN)
        return DMSG_ESHORT;
    out->keep_alive_ns = (int64_t)get_be64(rule + RULE_KEEP_ALIVE);
    out->type = (dmsg_rule_type)rule[RULE_TYPE];
    out->key_route_id = get_be32(rule + RULE_KEY_ID);
    switch (rule[RULE_TYPE]) {
    case DMSG_RULE_CONSUME:
        if (len != DMSG_RULE_CONSUME_LEN)
            return DMSG_EPROTO;
        memcpy(out->desc, rule + RULE_BODY, DMSG_ROUTE_DESC_LEN);
        return 0;
    case DMSG_RULE_FORWARD:
        if (len != DMSG_RULE_FORWARD_LEN)
            return DMSG_EPROTO;
        memcpy(out->desc, rule + RULE_BODY, DMSG_ROUTE_DESC_LEN);
        return parse_next(rule + DMSG_RULE_CONSUME_LEN, out);
    case DMSG_RULE_INTERMEDIARY:
        if (len != DMSG_RULE_INTERMEDIARY_LEN)
            return DMSG_EPROTO;
        return parse_next(rule + RULE_BODY, out);
    default:
        return DMSG_ETYPE;
    }
}

const char *dmsg_rule_type_name(dmsg_rule_type type)
{
    switch (type) {
    case DMSG_RULE_CONSUME: return "Consume";
    case DMSG_RULE_FORWARD: return "Forward";
    case DMSG_RULE_INTERMEDIARY: return "IntermediaryForward";
    default: return "Unknown";
    }
}

int dmsg_rule_string(const dmsg_rule_summary *rule, char *out, size_t cap, size_t *len)
{
    if (!rule || !out)
        return DMSG_EINVAL;
    char desc[DMSG_RULE_STRING_MAX], tp[37];
    int rc = dmsg_route_desc_string(rule->desc, desc, sizeof desc, NULL);
    if (rc)
        return rc;
    dmsg_tp_id_string(rule->next_tp_id, tp);
    int n;
    switch (rule->type) {
    case DMSG_RULE_CONSUME:
        n = snprintf(out, cap, "REV(keyRtID:%" PRIu32 ", %s)", rule->key_route_id, desc);
        break;
    case DMSG_RULE_FORWARD:
        n = snprintf(out, cap, "FWD(keyRtID:%" PRIu32 ", nxtRtID:%" PRIu32 ", nxtTpID:%s, %s)",
                     rule->key_route_id, rule->next_route_id, tp, desc);
        break;
    case DMSG_RULE_INTERMEDIARY:
        n = snprintf(out, cap, "INTER(keyRtID:%" PRIu32 ", nxtRtID:%" PRIu32 ", nxtTpID:%s)",
                     rule->key_route_id, rule->next_route_id, tp);
        break;
    default:
        return DMSG_ETYPE;
    }
    return finish_print(n, cap, len);
}

/* {"route_descriptor":{...}} members, in Go's field order (dst before src). */
static int desc_json(const uint8_t desc[DMSG_ROUTE_DESC_LEN], char *out, size_t cap)
{
    dmsg_route_addr src, dst;
    char src_hex[DMSG_PK_HEX_LEN + 1], dst_hex[DMSG_PK_HEX_LEN + 1];
    dmsg_route_desc_unpack(desc, &src, &dst);
    dmsg_pk_to_hex(&src.pk, src_hex);
    dmsg_pk_to_hex(&dst.pk, dst_hex);
    int n = snprintf(out, cap,
                     "\"route_descriptor\":{\"dst_pk\":\"%s\",\"src_pk\":\"%s\","
                     "\"dst_port\":%u,\"src_port\":%u}",
                     dst_hex, src_hex, (unsigned)dst.port, (unsigned)src.port);
    return finish_print(n, cap, NULL);
}

int dmsg_rule_summary_json(const dmsg_rule_summary *rule, char *out, size_t cap, size_t *len)
{
    if (!rule || !out)
        return DMSG_EINVAL;
    char desc[DMSG_RULE_SUMMARY_JSON_MAX], tp[37];
    int rc = desc_json(rule->desc, desc, sizeof desc);
    if (rc)
        return rc;
    dmsg_tp_id_string(rule->next_tp_id, tp);
    int n;
    switch (rule->type) {
    case DMSG_RULE_CONSUME:
        n = snprintf(out, cap,
                     "{\"keep_alive\":%" PRId64 ",\"rule_type\":0,\"key_route_id\":%" PRIu32
                     ",\"app_fields\":{%s}}",
                     rule->keep_alive_ns, rule->key_route_id, desc);
        break;
    case DMSG_RULE_FORWARD:
        n = snprintf(out, cap,
                     "{\"keep_alive\":%" PRId64 ",\"rule_type\":1,\"key_route_id\":%" PRIu32
                     ",\"forward_fields\":{%s,\"next_rid\":%" PRIu32 ",\"next_tid\":\"%s\"}}",
                     rule->keep_alive_ns, rule->key_route_id, desc, rule->next_route_id, tp);
        break;
    case DMSG_RULE_INTERMEDIARY:
        n = snprintf(out, cap,
                     "{\"keep_alive\":%" PRId64 ",\"rule_type\":2,\"key_route_id\":%" PRIu32
                     ",\"intermediary_forward_fields\":{\"next_rid\":%" PRIu32
                     ",\"next_tid\":\"%s\"}}",
                     rule->keep_alive_ns, rule->key_route_id, rule->next_route_id, tp);
        break;
    default:
        return DMSG_ETYPE;
    }
    return finish_print(n, cap, len);
}
