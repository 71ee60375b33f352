#include "dmsg/error.h"

static const char *const messages[] = {
    [0] = "ok",
    [-DMSG_EINVAL] = "invalid argument",
    [-DMSG_ENOMEM] = "out of memory",
    [-DMSG_EAGAIN] = "more input needed",
    [-DMSG_ETOOBIG] = "length over limit",
    [-DMSG_ESHORT] = "input too short",
    [-DMSG_EKEY] = "invalid key or curve point",
    [-DMSG_ESIG] = "invalid signature",
    [-DMSG_EMAC] = "message authentication failed",
    [-DMSG_ESTATE] = "not valid in the current state",
    [-DMSG_EREPLAY] = "replayed nonce",
    [-DMSG_ENONCE] = "nonce not increasing",
    [-DMSG_ELIMIT] = "limit reached",
    [-DMSG_EPROTO] = "protocol violation",
    [-DMSG_EVERSION] = "unknown protocol version",
    [-DMSG_ETYPE] = "unknown message type",
    [-DMSG_EWINDOW] = "flow-control window exceeded",
    [-DMSG_ESTREAM] = "unknown or duplicate stream",
    [-DMSG_EGOAWAY] = "session going away",
    [-DMSG_ECLOSED] = "closed",
    [-DMSG_ERESET] = "reset by peer",
    [-DMSG_EGOB] = "malformed gob data",
    [-DMSG_EGOBTYPE] = "incompatible gob type",
    [-DMSG_EDEPTH] = "nesting too deep",
    [-DMSG_EHEX] = "malformed hex",
    [-DMSG_ETIMEOUT] = "timed out",
    [-DMSG_EIO] = "I/O error",
    [-DMSG_ENOTFOUND] = "not found",
    [-DMSG_EEXIST] = "already exists",
    [-DMSG_EPERM] = "not permitted",
    [-DMSG_EWIRE] = "rejected by DMSG verification",
    [-DMSG_EGLITCH] = "too many protocol glitches",
};

const char *dmsg_strerror(int err)
{
    if (err > 0 || err <= DMSG_ELAST || messages[-err] == 0)
        return "unknown error";
    return messages[-err];
}
