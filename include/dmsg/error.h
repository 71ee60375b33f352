/* Error codes shared by every dmsgd module.
 *
 * Functions return 0 on success or a negative DMSG_E* code; dmsg_strerror() names each one.
 * Codes that reach a DMSG client are mapped to the reference's wire error codes by wire.h. */
#ifndef DMSG_ERROR_H
#define DMSG_ERROR_H

enum dmsg_err {
    DMSG_OK = 0,
    DMSG_EINVAL = -1,      /* invalid argument from the caller */
    DMSG_ENOMEM = -2,      /* allocation failed */
    DMSG_EAGAIN = -3,      /* need more input bytes (incremental parsers) */
    DMSG_ETOOBIG = -4,     /* length over the protocol or configured limit */
    DMSG_ESHORT = -5,      /* input shorter than the format requires */
    DMSG_EKEY = -6,        /* invalid public or secret key, or invalid curve point */
    DMSG_ESIG = -7,        /* signature does not verify */
    DMSG_EMAC = -8,        /* AEAD authentication failed */
    DMSG_ESTATE = -9,      /* call not valid in the object's current state */
    DMSG_EREPLAY = -10,    /* nonce seen before */
    DMSG_ENONCE = -11,     /* nonce not greater than the last accepted one */
    DMSG_ELIMIT = -12,     /* a configured limit was reached (streams, queue, window) */
    DMSG_EPROTO = -13,     /* peer broke the protocol */
    DMSG_EVERSION = -14,   /* unknown protocol version */
    DMSG_ETYPE = -15,      /* unknown message or frame type */
    DMSG_EWINDOW = -16,    /* flow-control window exceeded or overflowed */
    DMSG_ESTREAM = -17,    /* unknown or duplicate stream id */
    DMSG_EGOAWAY = -18,    /* peer sent go-away, or session is going away */
    DMSG_ECLOSED = -19,    /* stream or session closed */
    DMSG_ERESET = -20,     /* stream reset by the peer */
    DMSG_EGOB = -21,       /* malformed gob stream */
    DMSG_EGOBTYPE = -22,   /* gob type not compatible with the expected one */
    DMSG_EDEPTH = -23,     /* nesting deeper than allowed */
    DMSG_EHEX = -24,       /* malformed hex text */
    DMSG_ETIMEOUT = -25,   /* a deadline passed */
    DMSG_EIO = -26,        /* operating-system I/O error */
    DMSG_ENOTFOUND = -27,  /* no such key, entry or session */
    DMSG_EEXIST = -28,     /* already present */
    DMSG_EPERM = -29,      /* not permitted by policy */
    DMSG_EWIRE = -30,      /* the peer's object failed verification; see the wire error code */
    DMSG_EGLITCH = -31,    /* the peer crossed its glitch budget (dmsg/glitch.h) */
    DMSG_ELAST = -32
};

/* A short, stable description of a DMSG_E* code; never NULL. */
const char *dmsg_strerror(int err);

#endif
