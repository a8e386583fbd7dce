/*
 * The byte pump after login. Two directions, each reading from one side
 * only while the other side has taken everything read so far, so neither a
 * slow client nor a slow backend can make us buffer more than one chunk per
 * direction (back-pressure comes from TCP itself).
 *
 * When both sides are plaintext the bytes never enter user space: splice()
 * moves them socket -> pipe -> socket. Pipes come from a per-worker pool and
 * go back as soon as they are empty, so an idle session holds no pipe and
 * no buffer: its cost is the session struct, two conns and their events.
 * With TLS on either side (or a raw traffic log) a 16 KiB buffer is taken
 * while data is in flight and freed when it has been written.
 *
 * A client's half-close (EOF) is passed on to the backend once everything
 * before it was delivered, so the backend can still answer. The backend's
 * EOF, once its last bytes reached the client, ends the session (the
 * client's close may then be delayed, see max_disconnect_delay), as does
 * any error.
 */
#include "proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "str.h"
#include "xmalloc.h"

#define RELAY_CHUNK (16 * 1024)
#define RELAY_SPLICE_CHUNK (64 * 1024)
#define PIPE_POOL_MAX 64

struct relay_dir {
	struct conn *src;
	struct conn *dst;
	uint8_t *buf;          /* user-space bytes in flight, or NULL */
	size_t buf_size;
	size_t start, end;
	int pipe[2];           /* splice pipe while bytes are in it, or -1 */
	size_t in_pipe;
	int rawlog_fd;         /* -1 unless this user's traffic is logged */
	bool eof;              /* src reached end of stream */
	bool shut;             /* dst's write side was shut down */
};

struct relay {
	struct client *client;
	struct conn *cconn;    /* client side */
	struct conn *bconn;    /* backend side */
	struct relay_dir up;   /* client -> backend */
	struct relay_dir down; /* backend -> client */
	bool splice;
	bool backend_side;     /* the backend ended the session */
	const char *end_reason;
};

/* ---- pipe pool -------------------------------------------------------- */

int proxy_pipe_get(struct proxy_worker *w, int fds_r[2])
{
	if (w->pipe_pool_count > 0) {
		w->pipe_pool_count--;
		fds_r[0] = w->pipe_pool[2 * w->pipe_pool_count];
		fds_r[1] = w->pipe_pool[2 * w->pipe_pool_count + 1];
		return 0;
	}
	return pipe2(fds_r, O_NONBLOCK | O_CLOEXEC);
}

void proxy_pipe_put(struct proxy_worker *w, int fds[2])
{
	if (w->pipe_pool_count < PIPE_POOL_MAX) {
		if (w->pipe_pool == NULL)
			w->pipe_pool = xcalloc(2 * PIPE_POOL_MAX, sizeof(int));
		w->pipe_pool[2 * w->pipe_pool_count] = fds[0];
		w->pipe_pool[2 * w->pipe_pool_count + 1] = fds[1];
		w->pipe_pool_count++;
	} else {
		close(fds[0]);
		close(fds[1]);
	}
	fds[0] = fds[1] = -1;
}

/* ---- helpers ------------------------------------------------------------ */

static size_t dir_pending(const struct relay_dir *d)
{
	return (d->end - d->start) + d->in_pipe;
}

static void dir_release(struct relay *r, struct relay_dir *d)
{
	if (d->buf != NULL && d->start == d->end) {
		free(d->buf);
		d->buf = NULL;
		d->start = d->end = 0;
	}
	if (d->pipe[0] >= 0 && d->in_pipe == 0)
		proxy_pipe_put(r->client->worker, d->pipe);
}

static void dir_free(struct relay *r, struct relay_dir *d)
{
	free(d->buf);
	d->buf = NULL;
	if (d->pipe[0] >= 0) {
		/* a pipe with bytes left in it cannot be reused */
		if (d->in_pipe == 0) {
			proxy_pipe_put(r->client->worker, d->pipe);
		} else {
			close(d->pipe[0]);
			close(d->pipe[1]);
		}
	}
	if (d->rawlog_fd >= 0)
		close(d->rawlog_fd);
	d->rawlog_fd = -1;
}

static void relay_update_want(struct relay *r)
{
	/* read a side only when what we read from it before is gone */
	bool c_rd = !r->up.eof && dir_pending(&r->up) == 0;
	bool b_rd = !r->down.eof && dir_pending(&r->down) == 0;
	bool c_wr = dir_pending(&r->down) > 0;
	bool b_wr = dir_pending(&r->up) > 0;

	conn_want(r->cconn, c_rd, c_wr);
	conn_want(r->bconn, b_rd, b_wr);
}

/* Ends the session. The relay is freed by the client: callers return at
 * once. */
static void relay_end(struct relay *r, const char *reason)
{
	client_relay_finished(r->client, reason, r->backend_side);
}

void relay_pause(struct relay *r)
{
	conn_want(r->cconn, false, false);
	conn_want(r->bconn, false, false);
}

enum pump_result {
	PUMP_OK = 0,   /* waiting for I/O */
	PUMP_DONE,     /* both directions closed */
	PUMP_FAILED,   /* error: the session must end */
};

/* err: the errno of a syscall made around the conn (splice), or 0 to take
 * the conn's own error. */
static enum pump_result dir_fail(struct relay *r, struct conn *bad,
				 const char *what, int err)
{
	static _Thread_local char reason[160];
	if (bad == r->bconn)
		r->backend_side = true;
	str_printf(reason, sizeof(reason), "%s %s: %s",
		   bad == r->cconn ? "client" : "backend", what,
		   err != 0 ? strerror(err) : conn_error(bad));
	r->end_reason = reason;
	return PUMP_FAILED;
}

static void dir_rawlog(struct relay_dir *d, const uint8_t *data, size_t len)
{
	if (d->rawlog_fd < 0)
		return;
	while (len > 0) {
		ssize_t n = write(d->rawlog_fd, data, len);
		if (n <= 0) {
			/* a full disk must not stop the mail: stop logging */
			close(d->rawlog_fd);
			d->rawlog_fd = -1;
			return;
		}
		data += n;
		len -= (size_t)n;
	}
}

static enum pump_result dir_pump(struct relay *r, struct relay_dir *d)
{
	for (;;) {
		if (d->end > d->start) {
			ssize_t n = conn_write(d->dst, d->buf + d->start,
					       d->end - d->start);
			if (n == CONN_AGAIN)
				break;
			if (n == CONN_FAILED)
				return dir_fail(r, d->dst, "write failed", 0);
			d->start += (size_t)n;
			if (d->start == d->end)
				dir_release(r, d);
			continue;
		}
		if (d->in_pipe > 0) {
			ssize_t n = splice(d->pipe[0], NULL, conn_fd(d->dst), NULL,
					   d->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n < 0) {
				if (errno == EAGAIN || errno == EINTR)
					break;
				return dir_fail(r, d->dst, "write failed", errno);
			}
			d->in_pipe -= (size_t)n;
			conn_count_out(d->dst, (size_t)n);
			if (d->in_pipe == 0)
				dir_release(r, d);
			continue;
		}
		if (d->eof)
			break;
		if (r->splice) {
			if (d->pipe[0] < 0 && proxy_pipe_get(r->client->worker, d->pipe) < 0) {
				d->pipe[0] = d->pipe[1] = -1;
				return dir_fail(r, d->src, "pipe() failed", errno);
			}
			ssize_t n = splice(conn_fd(d->src), NULL, d->pipe[1], NULL,
					   RELAY_SPLICE_CHUNK,
					   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n < 0) {
				if (errno == EAGAIN || errno == EINTR) {
					dir_release(r, d);
					break;
				}
				return dir_fail(r, d->src, "read failed", errno);
			}
			if (n == 0) {
				d->eof = true;
				dir_release(r, d);
				break;
			}
			d->in_pipe = (size_t)n;
			conn_count_in(d->src, (size_t)n);
			continue;
		}
		if (d->buf == NULL) {
			d->buf_size = RELAY_CHUNK;
			d->buf = xmalloc(d->buf_size);
		}
		ssize_t n = conn_read(d->src, d->buf, d->buf_size);
		if (n == CONN_AGAIN) {
			dir_release(r, d);
			break;
		}
		if (n == CONN_EOF) {
			d->eof = true;
			dir_release(r, d);
			break;
		}
		if (n == CONN_FAILED)
			return dir_fail(r, d->src, "read failed", 0);
		d->start = 0;
		d->end = (size_t)n;
		dir_rawlog(d, d->buf, (size_t)n);
	}
	if (d->eof && dir_pending(d) == 0 && !d->shut) {
		if (d == &r->down) {
			/* The backend is gone and everything it said was
			 * delivered: the session is over. The client's close
			 * is the client's business (it may be delayed to
			 * spread reconnects), not a half-close now. */
			if (r->end_reason == NULL) {
				r->end_reason = "Disconnected by server";
				r->backend_side = true;
			}
			return PUMP_DONE;
		}
		/* The client half-closed: pass it on after its last bytes;
		 * the backend answers (LOGOUT) and closes. */
		conn_shutdown_write(d->dst);
		d->shut = true;
		if (r->end_reason == NULL)
			r->end_reason = "Disconnected by client";
	}
	return PUMP_OK;
}

static void relay_conn_event(struct conn *conn, enum conn_event ev,
			     void *context)
{
	struct relay *r = context;
	struct relay_dir *d;
	enum pump_result res;

	if (ev == CONN_EV_ERROR || ev == CONN_EV_TLS_READY)
		return; /* no handshakes happen in the relay */
	if (conn == r->cconn)
		d = ev == CONN_EV_READABLE ? &r->up : &r->down;
	else
		d = ev == CONN_EV_READABLE ? &r->down : &r->up;
	r->client->last_io_msecs = net_monotonic_msecs();
	res = dir_pump(r, d);
	if (res == PUMP_OK)
		relay_update_want(r);
	else
		relay_end(r, r->end_reason != NULL ? r->end_reason : "Disconnected");
}

static int rawlog_open(const struct client *c, const char *suffix)
{
	char path[512];
	if (str_printf(path, sizeof(path), "%s/%s-%s.%s", c->cfg->set.rawlog_dir,
		       c->user, c->session_id, suffix) < 0)
		return -1;
	/* session ids are base64: '/' must not make a sub-directory */
	for (char *p = path + strlen(c->cfg->set.rawlog_dir) + 1; *p != '\0'; p++) {
		if (*p == '/')
			*p = '_';
	}
	return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
}

static void dir_init(struct relay_dir *d, struct conn *src, struct conn *dst,
		     const struct buf *initial)
{
	d->src = src;
	d->dst = dst;
	d->pipe[0] = d->pipe[1] = -1;
	d->rawlog_fd = -1;
	if (initial != NULL && initial->len > 0) {
		d->buf_size = initial->len > RELAY_CHUNK ? initial->len : RELAY_CHUNK;
		d->buf = xmalloc(d->buf_size);
		memcpy(d->buf, initial->data, initial->len);
		d->end = initial->len;
	}
}

struct relay *relay_start(struct client *c, struct conn *client_conn,
			  struct conn *backend_conn,
			  const struct buf *to_client,
			  const struct buf *to_backend)
{
	struct relay *r = xcalloc(1, sizeof(*r));

	r->client = c;
	r->cconn = client_conn;
	r->bconn = backend_conn;
	dir_init(&r->up, client_conn, backend_conn, to_backend);
	dir_init(&r->down, backend_conn, client_conn, to_client);
	if (c->rawlog && c->cfg->set.rawlog_dir[0] != '\0') {
		r->up.rawlog_fd = rawlog_open(c, "in");
		r->down.rawlog_fd = rawlog_open(c, "out");
	}
	r->splice = !conn_is_tls(client_conn) && !conn_is_tls(backend_conn) &&
		    r->up.rawlog_fd < 0 && r->down.rawlog_fd < 0;
	conn_set_callback(client_conn, relay_conn_event, r);
	conn_set_callback(backend_conn, relay_conn_event, r);
	/* What is already waiting (the tagged OK) goes out from the loop:
	 * an error now would end the session under our caller's feet. */
	relay_update_want(r);
	return r;
}

void relay_close(struct relay *r, const struct buf *last_line)
{
	/* Only at a boundary: bytes of a backend answer still in flight
	 * would be cut by our line. */
	if (last_line != NULL && dir_pending(&r->down) == 0)
		(void)conn_write(r->cconn, last_line->data, last_line->len);
}

void relay_free(struct relay **rp)
{
	struct relay *r = *rp;

	if (r == NULL)
		return;
	*rp = NULL;
	dir_free(r, &r->up);
	dir_free(r, &r->down);
	conn_free(&r->cconn);
	conn_free(&r->bconn);
	free(r);
}

unsigned long long relay_bytes_in(const struct relay *r)
{
	return conn_bytes_in(r->cconn);
}

unsigned long long relay_bytes_out(const struct relay *r)
{
	return conn_bytes_out(r->cconn);
}
