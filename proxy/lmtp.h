#ifndef MR_PROXY_LMTP_H
#define MR_PROXY_LMTP_H

/*
 * LMTP (RFC 2033) from MTAs, routed per recipient to the backends
 * (lmtp.c; docs/proxy.md "LMTP"). An LMTP session is a struct client of
 * the session core with this protocol plugged in, so connection limits,
 * per-IP counts, PROXY headers, implicit TLS, shutdown and the deferred
 * free are the same as for IMAP and POP3. It never logs in and never
 * relays: client.c hands listeners with `protocol = lmtp` to it and the
 * protocol does the rest.
 */

#include "proxy.h"

extern const struct client_protocol lmtp_protocol;

#endif
