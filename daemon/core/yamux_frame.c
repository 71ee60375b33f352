/* The 12-byte yamux header, big-endian throughout. */
#include "dmsg/yamux.h"

#include "dmsg/error.h"

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint16_t get_be16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void dmsg_yamux_hdr_encode(const dmsg_yamux_hdr *hdr, uint8_t out[DMSG_YAMUX_HDR_LEN])
{
    out[0] = hdr->version;
    out[1] = hdr->type;
    put_be16(out + 2, hdr->flags);
    put_be32(out + 4, hdr->stream_id);
    put_be32(out + 8, hdr->length);
}

int dmsg_yamux_hdr_decode(const uint8_t *in, size_t len, dmsg_yamux_hdr *hdr)
{
    if (len < DMSG_YAMUX_HDR_LEN)
        return DMSG_ESHORT;
    hdr->version = in[0];
    hdr->type = in[1];
    hdr->flags = get_be16(in + 2);
    hdr->stream_id = get_be32(in + 4);
    hdr->length = get_be32(in + 8);
    if (hdr->version != DMSG_YAMUX_VERSION)
        return DMSG_EVERSION;
    if (hdr->type > DMSG_YAMUX_GOAWAY)
        return DMSG_ETYPE;
    return 0;
}
