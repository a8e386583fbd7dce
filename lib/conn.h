#ifndef MR_CONN_H
#define MR_CONN_H

/*
 * A non-blocking byte stream over a socket, plaintext or TLS, on one
 * libevent base. It hides OpenSSL's "a read wants a write" inversions: the
 * owner says what it wants (read, write, or both) and is called back when
 * retrying that operation can make progress.
 *
 * Memory is small on purpose: no buffers of its own (the owner supplies
 * them) and two events. A connection that is waiting costs about 300 bytes
 * plus the SSL object when TLS is on.
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <openssl/types.h>

struct event_base;
struct conn;

enum conn_event {
	CONN_EV_READABLE = 0, /* conn_read can make progress */
	CONN_EV_WRITABLE,     /* conn_write can make progress */
	CONN_EV_TLS_READY,    /* the TLS handshake completed */
	CONN_EV_ERROR,        /* handshake failed; see conn_error() */
};

typedef void conn_event_fn(struct conn *c, enum conn_event ev, void *context);

/* Return values of conn_read/conn_write besides a byte count. */
#define CONN_EOF 0
#define CONN_AGAIN (-1)
#define CONN_FAILED (-2)

/* Wraps fd (non-blocking, owned from now on: conn_free closes it). */
struct conn *conn_new(struct event_base *base, int fd, conn_event_fn *cb,
		      void *context);
/* Closes the socket, frees the SSL and the events; sets *c to NULL. Safe
 * on NULL. Never call it from inside this conn's own callback unless the
 * caller returns immediately afterwards without touching it. */
void conn_free(struct conn **c);

/* Hands the connection's events to another owner (e.g. the relay after
 * the login). */
void conn_set_callback(struct conn *c, conn_event_fn *cb, void *context);

/* Starts a TLS handshake over the connection, as server or client; the conn
 * owns ssl from now on (also on failure). Bytes read before (with
 * conn_read) stay consumed: call this only at a protocol boundary.
 * CONN_EV_TLS_READY or CONN_EV_ERROR follows. Returns 0, or -1 when the
 * SSL could not be attached (see conn_error). */
int conn_start_tls(struct conn *c, SSL *ssl, bool server);

/* Reads up to len bytes: > 0 bytes read, CONN_EOF on orderly close,
 * CONN_AGAIN when nothing is available (the conn keeps waiting if read is
 * wanted), CONN_FAILED on error (see conn_error). */
ssize_t conn_read(struct conn *c, void *buf, size_t len);
/* Writes up to len bytes: > 0 bytes written, CONN_AGAIN, CONN_FAILED. */
ssize_t conn_write(struct conn *c, const void *buf, size_t len);

/* Declares interest. The callback fires with READABLE/WRITABLE only while
 * the matching interest is on. */
void conn_want(struct conn *c, bool read, bool write);

/* Half-close for writing: TCP shutdown, or a TLS close_notify first. */
void conn_shutdown_write(struct conn *c);

int conn_fd(const struct conn *c);
bool conn_is_tls(const struct conn *c);
/* True while a handshake is under way. */
bool conn_in_handshake(const struct conn *c);
SSL *conn_ssl(const struct conn *c);
/* The last error as text ("Connection reset by peer", an OpenSSL
 * reason...). Never NULL. */
const char *conn_error(const struct conn *c);
/* Total bytes read/written through this conn (application bytes). */
unsigned long long conn_bytes_in(const struct conn *c);
unsigned long long conn_bytes_out(const struct conn *c);
/* Adds n to the byte counters, for bytes moved around the conn (splice). */
void conn_count_in(struct conn *c, size_t n);
void conn_count_out(struct conn *c, size_t n);

#endif
