/* callvt.c -- see callvt.h. */
#include "server/callvt.h"

#define VT(c) (((const dts_call_head *)(const void *)(c))->vt)

static void ref(dts_call *c) { VT(c)->ref(c); }
static void unref(dts_call *c) { VT(c)->unref(c); }
static void set_owner(dts_call *c, dts_actor *o) { VT(c)->set_owner(c, o); }
static bool ended(dts_call *c) { return VT(c)->ended(c); }
static void set_owner_data(dts_call *c, void *p) { VT(c)->set_owner_data(c, p); }
static void *owner_data(dts_call *c) { return VT(c)->owner_data(c); }
static void reply(dts_call *c, dts_buf r) { VT(c)->reply(c, r); }
static void fail(dts_call *c, dts_status st, const char *msg) { VT(c)->fail(c, st, msg); }
static void stream_open(dts_call *c) { VT(c)->stream_open(c); }
static void stream_send(dts_call *c, dts_buf m) { VT(c)->stream_send(c, m); }
static void stream_end(dts_call *c, dts_status st, const char *msg) { VT(c)->stream_end(c, st, msg); }
static size_t stream_queued(dts_call *c) { return VT(c)->stream_queued(c); }
static void stream_watch(dts_call *c, size_t below) { VT(c)->stream_watch(c, below); }
static void describe(dts_call *c, char *w, size_t wn, char *a, size_t an) { VT(c)->describe(c, w, wn, a, an); }
static const char *principal(dts_call *c) { return VT(c)->principal(c); }
static bool lease_bound(dts_call *c) { return VT(c)->lease_bound(c); }

const dts_call_ops dts_server_call_ops = {
    .ref = ref,
    .unref = unref,
    .set_owner = set_owner,
    .ended = ended,
    .set_owner_data = set_owner_data,
    .owner_data = owner_data,
    .reply = reply,
    .fail = fail,
    .stream_open = stream_open,
    .stream_send = stream_send,
    .stream_end = stream_end,
    .stream_queued = stream_queued,
    .stream_watch = stream_watch,
    .describe = describe,
    .principal = principal,
    .lease_bound = lease_bound,
};
