/* Private to the yamux core (yamux.c: the API, yamux_input.c: the receive machine,
 * yamux_streams.c: the stream table, yamux_frame.c: the header codec).
 *
 * The stream table uses open addressing, linear probing and backward-shift deletion. Pointers
 * into it stay valid only until the next insert or forget, so code looks streams up by id
 * again after either (and after handing an event to the caller, who may call the API). */
#ifndef DMSG_YAMUX_INTERNAL_H
#define DMSG_YAMUX_INTERNAL_H

#include "dmsg/yamux.h"

enum yamux_stream_flag {
    YS_LOCAL = 1 << 0,         /* we opened it */
    YS_AWAIT_ACK = 1 << 1,     /* our SYN not yet ACKed */
    YS_AWAIT_ACCEPT = 1 << 2,  /* peer's SYN not yet accepted */
    YS_FIN_SENT = 1 << 3,
    YS_FIN_RECV = 1 << 4
};

struct dmsg_yamux_stream {
    uint32_t id; /* 0 marks an empty slot: stream id 0 is never a stream */
    uint32_t flags;
    uint32_t send_window;
    uint32_t recv_window; /* invariant: recv_window + in flight + buffered + uncredited = window */
    uint32_t buffered;
    uint32_t uncredited;
    void *user;
};

struct dmsg_yamux_stream *yamux_stream_find(const dmsg_yamux *y, uint32_t id);

/* A zeroed record for a new id (not present). DMSG_ENOMEM when the table cannot grow. */
int yamux_stream_insert(dmsg_yamux *y, uint32_t id, struct dmsg_yamux_stream **out);

/* Drops the record and its share of the stream counters. */
void yamux_stream_forget(dmsg_yamux *y, struct dmsg_yamux_stream *s);

uint32_t yamux_slot_capacity(const dmsg_yamux *y);

/* The record in slot *cursor or later, advancing *cursor past it; NULL at the end. */
struct dmsg_yamux_stream *yamux_stream_scan(const dmsg_yamux *y, size_t *cursor);

/* Session helpers shared by yamux.c and yamux_input.c. */

void yamux_put_frame(uint8_t frame[DMSG_YAMUX_HDR_LEN], uint8_t type, uint16_t flags,
                     uint32_t id, uint32_t length);

/* Enters the sticky error state and returns err. */
int yamux_fail(dmsg_yamux *y, int err);

/* Go's rule: the first frame we send on a stream the peer opened carries ACK and accepts it. */
uint16_t yamux_take_ack_flag(dmsg_yamux *y, struct dmsg_yamux_stream *s);

#endif
