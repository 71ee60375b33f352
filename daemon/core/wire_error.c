/* The reference's DMSG error codes, texts and temporary flags (errors.go of the reference). */
#include <stdio.h>

#include "dmsg/error.h"
#include "dmsg/wire.h"

static const struct {
    uint16_t code;
    bool temporary;
    const char *text;
} errors[] = {
    {DMSG_WIRE_DISC_ENTRY_NOT_FOUND, false, "entry is not found in discovery"},
    {DMSG_WIRE_DISC_ENTRY_NOT_SERVER, false, "entry is not of server in discovery"},
    {DMSG_WIRE_DISC_ENTRY_NOT_CLIENT, false, "entry is not of client in discovery"},
    {DMSG_WIRE_DISC_NO_DELEGATED, false, "client entry in discovery has no delegated servers"},
    {DMSG_WIRE_ENTITY_CLOSED, false, "local entity closed"},
    {DMSG_WIRE_SESSION_CLOSED, false, "local session closed"},
    {DMSG_WIRE_CANNOT_CONNECT_DELEGATED, false, "cannot connect to delegated server"},
    {DMSG_WIRE_HANDSHAKE_EXTRA_BYTES, false, "extra bytes received during session handshake"},
    {DMSG_WIRE_REQ_INVALID_SIG, false, "request has invalid signature"},
    {DMSG_WIRE_REQ_INVALID_TIMESTAMP, false, "request timestamp should be higher than last"},
    {DMSG_WIRE_REQ_INVALID_SRC_PK, false, "request has invalid source public key"},
    {DMSG_WIRE_REQ_INVALID_DST_PK, false, "request has invalid destination public key"},
    {DMSG_WIRE_REQ_INVALID_SRC_PORT, false, "request has invalid source port"},
    {DMSG_WIRE_REQ_INVALID_DST_PORT, false, "request has invalid destination port"},
    {DMSG_WIRE_REQ_NO_LISTENER, true, "request has no associated listener"},
    {DMSG_WIRE_REQ_NO_NEXT_SESSION, false,
     "request cannot be forwarded because the next session is non-existent"},
    {DMSG_WIRE_RESP_INVALID_SIG, false, "response has invalid signature"},
    {DMSG_WIRE_RESP_INVALID_HASH, false, "response has invalid hash of associated request"},
    {DMSG_WIRE_RESP_NOT_ACCEPTED, false, "response rejected associated request without reason"},
    {DMSG_WIRE_SIGNED_OBJECT_INVALID, false, "signed object is invalid"},
    {DMSG_WIRE_PORT_OCCUPIED, false, "port already occupied"},
    {DMSG_WIRE_ACCEPT_CHAN_MAXED, true, "listener accept chan maxed"},
};

static int find(uint16_t code)
{
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
        if (errors[i].code == code)
            return (int)i;
    return -1;
}

const char *dmsg_wire_error_text(uint16_t code)
{
    int i = find(code);
    return i < 0 ? NULL : errors[i].text;
}

bool dmsg_wire_error_is_temporary(uint16_t code)
{
    int i = find(code);
    return i >= 0 && errors[i].temporary;
}

int dmsg_wire_error_format(char *out, size_t cap, uint16_t code, const char *detail)
{
    int i = find(code);
    if (i < 0)
        return DMSG_ENOTFOUND;
    int n = snprintf(out, cap, "dmsg error %u - %s%s%s", (unsigned)code, errors[i].text,
                     detail ? ": " : "", detail ? detail : "");
    if (n < 0 || (size_t)n >= cap)
        return DMSG_ETOOBIG;
    return n;
}
