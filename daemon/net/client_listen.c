/* Listening on DMSG ports: the accept queue of established conns (see client.h). */
#include <stdlib.h>

#include "client_internal.h"
#include "dmsg/error.h"

dmsg_listener *listener_find(dmsg_client *c, uint16_t port)
{
    for (dmsg_listener *l = c->listeners; l; l = l->next)
        if (l->port == port)
            return l;
    return NULL;
}

int dmsg_client_listen(dmsg_client *c, uint16_t port, dmsg_listener_cb cb, void *ctx,
                       dmsg_listener **out)
{
    if (c->closing)
        return DMSG_ECLOSED;
    if (!cb)
        return DMSG_EINVAL;
    int err = dmsg_porter_reserve(&c->porter, port);
    if (err < 0)
        return err;
    dmsg_listener *l = calloc(1, sizeof *l);
    if (!l) {
        dmsg_porter_release(&c->porter, port);
        return DMSG_ENOMEM;
    }
    l->client = c;
    l->port = port;
    l->cb = cb;
    l->ctx = ctx;
    l->next = c->listeners;
    c->listeners = l;
    *out = l;
    return 0;
}

void listener_enqueue(dmsg_listener *l, dmsg_conn *conn)
{
    conn->listener = l;
    conn->q_next = NULL;
    if (l->q_tail)
        l->q_tail->q_next = conn;
    else
        l->q_head = conn;
    l->q_tail = conn;
    l->n_queued++;
    l->cb(l, l->ctx);
}

void listener_unlink_conn(dmsg_conn *conn)
{
    dmsg_listener *l = conn->listener;
    if (!l)
        return;
    dmsg_conn *prev = NULL;
    for (dmsg_conn *q = l->q_head; q; prev = q, q = q->q_next) {
        if (q != conn)
            continue;
        if (prev)
            prev->q_next = q->q_next;
        else
            l->q_head = q->q_next;
        if (l->q_tail == q)
            l->q_tail = prev;
        l->n_queued--;
        break;
    }
    conn->q_next = NULL;
    conn->listener = NULL;
}

int dmsg_listener_accept(dmsg_listener *l, const dmsg_conn_callbacks *cb, void *ctx,
                         dmsg_conn **out)
{
    dmsg_conn *conn = l->q_head;
    if (!conn)
        return DMSG_EAGAIN;
    if (!cb || !cb->on_data)
        return DMSG_EINVAL;
    listener_unlink_conn(conn);
    conn->phase = CONN_OPEN;
    dmsg_conn_set_callbacks(conn, cb, ctx);
    *out = conn;
    return 0;
}

size_t dmsg_listener_queued(const dmsg_listener *l)
{
    return l->n_queued;
}

uint16_t dmsg_listener_port(const dmsg_listener *l)
{
    return l->port;
}

void dmsg_listener_close(dmsg_listener *l)
{
    dmsg_client *c = l->client;
    for (dmsg_listener **pp = &c->listeners; *pp; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    }
    while (l->q_head) {
        dmsg_conn *conn = l->q_head;
        listener_unlink_conn(conn);
        conn->phase = CONN_REFUSING; /* nobody will take it: drop it quietly */
        conn_abort(conn, 0);
    }
    dmsg_porter_release(&c->porter, l->port);
    free(l);
}

void listeners_close_all(dmsg_client *c)
{
    while (c->listeners)
        dmsg_listener_close(c->listeners);
}
