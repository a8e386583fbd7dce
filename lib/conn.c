#include "conn.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "str.h"
#include "xmalloc.h"

struct conn {
	int fd;
	SSL *ssl;
	struct event *ev_rd;
	struct event *ev_wr;
	conn_event_fn *cb;
	void *context;

	bool want_read;
	bool want_write;
	bool handshaking;
	/* OpenSSL inversions: the last SSL_read wanted the socket writable,
	 * the last SSL_write wanted it readable, the handshake wants write. */
	bool read_needs_write;
	bool write_needs_read;
	bool hs_wants_write;
	/* which events are currently added */
	bool rd_on;
	bool wr_on;
	/* conn_free was called from inside our callback: free on return */
	bool in_callback;
	bool free_pending;

	unsigned long long bytes_in;
	unsigned long long bytes_out;
	char error[160];
};

static void conn_destroy(struct conn *c)
{
	event_free(c->ev_rd);
	event_free(c->ev_wr);
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

static void set_errno_error(struct conn *c, int err)
{
	char tmp[128];
	const char *msg = strerror_r(err, tmp, sizeof(tmp));
	str_printf(c->error, sizeof(c->error), "%s", msg);
}

static void set_ssl_error(struct conn *c, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	char reason[120];

	if (e != 0) {
		ERR_error_string_n(e, reason, sizeof(reason));
		str_printf(c->error, sizeof(c->error), "%s: %s", what, reason);
	} else if (errno != 0) {
		char tmp[96];
		str_printf(c->error, sizeof(c->error), "%s: %s", what,
			   strerror_r(errno, tmp, sizeof(tmp)));
	} else {
		str_printf(c->error, sizeof(c->error),
			   "%s: connection closed", what);
	}
	ERR_clear_error();
}

static void update_events(struct conn *c)
{
	bool rd = false, wr = false;

	if (c->handshaking) {
		rd = !c->hs_wants_write;
		wr = c->hs_wants_write;
	} else {
		if (c->want_read) {
			if (c->read_needs_write)
				wr = true;
			else
				rd = true;
		}
		if (c->want_write) {
			if (c->write_needs_read)
				rd = true;
			else
				wr = true;
		}
	}
	if (rd != c->rd_on) {
		if (rd)
			event_add(c->ev_rd, NULL);
		else
			event_del(c->ev_rd);
		c->rd_on = rd;
	}
	if (wr != c->wr_on) {
		if (wr)
			event_add(c->ev_wr, NULL);
		else
			event_del(c->ev_wr);
		c->wr_on = wr;
	}
	/* Bytes already decrypted inside OpenSSL never make the fd readable
	 * again: hand them out without waiting. SSL_pending, not
	 * SSL_has_pending: the latter is also true for part of a record,
	 * which cannot be read yet and would make this spin. */
	if (!c->handshaking && c->want_read && c->ssl != NULL &&
	    SSL_pending(c->ssl) > 0)
		event_active(c->ev_rd, EV_READ, 0);
}

/* Calls the owner; returns false when the conn was freed meanwhile. */
static bool deliver(struct conn *c, enum conn_event ev)
{
	c->in_callback = true;
	c->cb(c, ev, c->context);
	c->in_callback = false;
	if (c->free_pending) {
		conn_destroy(c);
		return false;
	}
	return true;
}

static void do_handshake(struct conn *c)
{
	ERR_clear_error();
	errno = 0;
	int ret = SSL_do_handshake(c->ssl);
	if (ret == 1) {
		c->handshaking = false;
		update_events(c);
		deliver(c, CONN_EV_TLS_READY);
		return;
	}
	switch (SSL_get_error(c->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		c->hs_wants_write = false;
		update_events(c);
		return;
	case SSL_ERROR_WANT_WRITE:
		c->hs_wants_write = true;
		update_events(c);
		return;
	default:
		set_ssl_error(c, "TLS handshake failed");
		c->handshaking = false;
		c->want_read = c->want_write = false;
		update_events(c);
		deliver(c, CONN_EV_ERROR);
		return;
	}
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	(void)fd;
	(void)what;

	if (c->handshaking) {
		do_handshake(c);
		return;
	}
	if (c->want_write && c->write_needs_read) {
		if (!deliver(c, CONN_EV_WRITABLE))
			return;
	}
	if (c->want_read && !c->read_needs_write)
		deliver(c, CONN_EV_READABLE);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	(void)fd;
	(void)what;

	if (c->handshaking) {
		do_handshake(c);
		return;
	}
	if (c->want_read && c->read_needs_write) {
		if (!deliver(c, CONN_EV_READABLE))
			return;
	}
	if (c->want_write && !c->write_needs_read)
		deliver(c, CONN_EV_WRITABLE);
}

struct conn *conn_new(struct event_base *base, int fd, conn_event_fn *cb,
		      void *context)
{
	struct conn *c = xcalloc(1, sizeof(*c));

	c->fd = fd;
	c->cb = cb;
	c->context = context;
	c->ev_rd = event_new(base, fd, EV_READ | EV_PERSIST, on_readable, c);
	c->ev_wr = event_new(base, fd, EV_WRITE | EV_PERSIST, on_writable, c);
	if (c->ev_rd == NULL || c->ev_wr == NULL) {
		/* libevent only fails here on allocation failure */
		xalloc_fail_abort();
	}
	return c;
}

void conn_free(struct conn **cp)
{
	struct conn *c = *cp;

	if (c == NULL)
		return;
	*cp = NULL;
	if (c->in_callback) {
		/* stop all further events; the dispatcher frees it */
		event_del(c->ev_rd);
		event_del(c->ev_wr);
		c->free_pending = true;
		return;
	}
	conn_destroy(c);
}

void conn_set_callback(struct conn *c, conn_event_fn *cb, void *context)
{
	c->cb = cb;
	c->context = context;
}

int conn_start_tls(struct conn *c, SSL *ssl, bool server)
{
	if (c->ssl != NULL) {
		SSL_free(ssl);
		str_printf(c->error, sizeof(c->error), "TLS already active");
		return -1;
	}
	c->ssl = ssl;
	if (SSL_set_fd(ssl, c->fd) != 1) {
		set_ssl_error(c, "SSL_set_fd failed");
		return -1;
	}
	SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
			  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* Mail clients often close without close_notify; that is an end of
	 * stream for us, not an error to report. */
	SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
	if (server)
		SSL_set_accept_state(ssl);
	else
		SSL_set_connect_state(ssl);
	c->handshaking = true;
	c->hs_wants_write = !server;
	update_events(c);
	/* Start from the loop, never from inside the caller. */
	event_active(c->hs_wants_write ? c->ev_wr : c->ev_rd,
		     c->hs_wants_write ? EV_WRITE : EV_READ, 0);
	return 0;
}

ssize_t conn_read(struct conn *c, void *buf, size_t len)
{
	if (len == 0)
		return CONN_AGAIN;
	if (c->ssl == NULL) {
		for (;;) {
			ssize_t n = read(c->fd, buf, len);
			if (n > 0) {
				c->bytes_in += (unsigned long long)n;
				return n;
			}
			if (n == 0)
				return CONN_EOF;
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return CONN_AGAIN;
			set_errno_error(c, errno);
			return CONN_FAILED;
		}
	}
	if (c->handshaking)
		return CONN_AGAIN;
	ERR_clear_error();
	errno = 0;
	int n = SSL_read(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
	if (n > 0) {
		if (c->read_needs_write) {
			c->read_needs_write = false;
			update_events(c);
		}
		c->bytes_in += (unsigned long long)n;
		return n;
	}
	switch (SSL_get_error(c->ssl, n)) {
	case SSL_ERROR_WANT_READ:
		if (c->read_needs_write) {
			c->read_needs_write = false;
			update_events(c);
		}
		return CONN_AGAIN;
	case SSL_ERROR_WANT_WRITE:
		if (!c->read_needs_write) {
			c->read_needs_write = true;
			update_events(c);
		}
		return CONN_AGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return CONN_EOF;
	case SSL_ERROR_SYSCALL:
		if (errno == 0 && ERR_peek_error() == 0)
			return CONN_EOF;
		set_ssl_error(c, "TLS read failed");
		return CONN_FAILED;
	default:
		set_ssl_error(c, "TLS read failed");
		return CONN_FAILED;
	}
}

ssize_t conn_write(struct conn *c, const void *buf, size_t len)
{
	if (len == 0)
		return 0;
	if (c->ssl == NULL) {
		for (;;) {
			ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
			if (n >= 0) {
				c->bytes_out += (unsigned long long)n;
				return n == 0 ? CONN_AGAIN : n;
			}
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return CONN_AGAIN;
			set_errno_error(c, errno);
			return CONN_FAILED;
		}
	}
	if (c->handshaking)
		return CONN_AGAIN;
	ERR_clear_error();
	errno = 0;
	int n = SSL_write(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
	if (n > 0) {
		if (c->write_needs_read) {
			c->write_needs_read = false;
			update_events(c);
		}
		c->bytes_out += (unsigned long long)n;
		return n;
	}
	switch (SSL_get_error(c->ssl, n)) {
	case SSL_ERROR_WANT_WRITE:
		if (c->write_needs_read) {
			c->write_needs_read = false;
			update_events(c);
		}
		return CONN_AGAIN;
	case SSL_ERROR_WANT_READ:
		if (!c->write_needs_read) {
			c->write_needs_read = true;
			update_events(c);
		}
		return CONN_AGAIN;
	default:
		set_ssl_error(c, "TLS write failed");
		return CONN_FAILED;
	}
}

void conn_want(struct conn *c, bool read, bool write)
{
	c->want_read = read;
	c->want_write = write;
	update_events(c);
}

void conn_shutdown_write(struct conn *c)
{
	if (c->ssl != NULL && !c->handshaking) {
		ERR_clear_error();
		(void)SSL_shutdown(c->ssl);
		ERR_clear_error();
	}
	(void)shutdown(c->fd, SHUT_WR);
}

int conn_fd(const struct conn *c)
{
	return c->fd;
}

bool conn_is_tls(const struct conn *c)
{
	return c->ssl != NULL;
}

bool conn_in_handshake(const struct conn *c)
{
	return c->handshaking;
}

SSL *conn_ssl(const struct conn *c)
{
	return c->ssl;
}

const char *conn_error(const struct conn *c)
{
	return c->error[0] != '\0' ? c->error : "unknown error";
}

unsigned long long conn_bytes_in(const struct conn *c)
{
	return c->bytes_in;
}

unsigned long long conn_bytes_out(const struct conn *c)
{
	return c->bytes_out;
}

void conn_count_in(struct conn *c, size_t n)
{
	c->bytes_in += n;
}

void conn_count_out(struct conn *c, size_t n)
{
	c->bytes_out += n;
}
