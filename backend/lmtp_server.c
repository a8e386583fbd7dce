/*
 * LMTP server of the mail node (RFC 2033). Reply texts follow Dovecot
 * 2.3's lmtp and our proxy (proxy/lmtp.c).
 *
 *   greeting 220 <host> mailring-backend ready (only to
 *            lmtp_trusted_networks; others get 554 5.7.1 and close)
 *   LHLO -> 250 PIPELINING, 8BITMIME, ENHANCEDSTATUSCODES, SIZE <max>
 *   MAIL FROM:<path> [SIZE=n] [BODY=7BIT|8BITMIME]
 *   RCPT TO:<path>   looked up in the passdb (lookup only, no password);
 *                    unknown -> 550 5.1.1; the user's Maildir is created
 *                    if missing (its tmp/ may hold the spool)
 *   DATA             dot-unstuffed through smtp_data_decoder into the
 *                    spool; then, for each accepted recipient in RCPT
 *                    order: a new file in its INBOX tmp/ gets
 *                    "Return-Path: <from>" and "Delivered-To: addr" and
 *                    the message, and is fsynced and linked into new/
 *                    (maildir_save_finish); only then "250 2.0.0 <addr>
 *                    <id> Saved". ENOSPC/EDQUOT -> 452 4.2.2 Mailbox is
 *                    full, other errors -> 451 4.3.0, for that recipient.
 *                    Over lmtp_max_message_size: 552 5.3.4 per recipient,
 *                    and the session goes on.
 *   RSET, NOOP, VRFY (252), QUIT; HELO/EHLO/BDAT/STARTTLS... 500/502.
 *
 * Spool (bounded memory): the first LMTP_SPOOL_MEM bytes stay in a fixed
 * buffer of the session; a longer message goes on to an unlinked file in
 * the first recipient's tmp/ (O_TMPFILE, else mkstemp + unlink), so it is
 * on the same file system as the mail and vanishes on a crash. Each
 * recipient gets its own copy (its Delivered-To differs, so hard links
 * cannot share one file). Session memory: the spool buffer, 4 KiB input,
 * at most 64 KiB of output and small per-recipient strings.
 *
 * While a recipient is looked up or the message is delivered the client
 * is not read: pipelined commands wait in the socket.
 *
 * Delivery (fsyncs) runs on the worker thread: a slow disk delays the
 * other sessions of that worker, as with POP3 (known limit of this slice).
 * The UID list is not touched: the next POP3/IMAP scan gives the new file
 * its UID.
 */
#include "lmtp_server.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "auth/auth.h"
#include "buf.h"
#include "conn.h"
#include "fdio.h"
#include "io_pool.h"
#include "log.h"
#include "maildir.h"
#include "smtp_parse.h"
#include "str.h"
#include "xmalloc.h"

#define IN_BUF_SIZE 4096
#define OUT_MAX (64 * 1024)
#define LMTP_MAX_PARAMS 16
#define LMTP_SPOOL_MEM (128 * 1024) /* spool bytes kept in memory */
#define LMTP_COPY_CHUNK (16 * 1024) /* spool file bytes per read */
#define LMTP_DECODE_CHUNK 8192
/* address text shown in replies: keeps 1000 replies inside OUT_MAX's
 * reach once written in turn, and one reply inside a line */
#define LMTP_ADDR_SHOW_MAX 256
#define LMTP_REPLY_MAX 1024

/* ---- settings generations ---------------------------------------------- */

/* What LMTP needs from struct node_settings, copied. */
struct lmtp_config {
	atomic_uint refs;
	char *mail_location;
	uint64_t max_line_length;
	uint64_t max_bad_commands;
	uint64_t max_message_size;
	uint64_t max_recipients;
	uint64_t timeout_msecs;
	struct config_nets trusted;
	char recipient_delimiter[8];
	bool save_to_detail_mailbox;
};

static pthread_mutex_t config_lock = PTHREAD_MUTEX_INITIALIZER;
static struct lmtp_config *config_current;
static struct auth *server_auth;
static char server_hostname[256];

static struct lmtp_config *config_ref(void)
{
	pthread_mutex_lock(&config_lock);
	struct lmtp_config *c = config_current;
	atomic_fetch_add(&c->refs, 1);
	pthread_mutex_unlock(&config_lock);
	return c;
}

static void config_unref(struct lmtp_config **c)
{
	if (*c == NULL)
		return;
	if (atomic_fetch_sub(&(*c)->refs, 1) == 1) {
		free((*c)->mail_location);
		free((*c)->trusted.nets);
		free(*c);
	}
	*c = NULL;
}

void lmtp_server_config_install(const struct node_settings *set)
{
	struct lmtp_config *c = xcalloc(1, sizeof(*c)), *old;

	atomic_init(&c->refs, 1);
	c->mail_location = xstrdup(set->mail_location);
	c->max_line_length = set->max_line_length;
	c->max_bad_commands = set->max_bad_commands;
	c->max_message_size = set->lmtp_max_message_size;
	c->max_recipients = set->lmtp_max_recipients;
	c->timeout_msecs = set->lmtp_timeout_msecs;
	str_copy(str_cstr(set->recipient_delimiter), c->recipient_delimiter,
		 sizeof(c->recipient_delimiter));
	c->save_to_detail_mailbox = set->lmtp_save_to_detail_mailbox;
	c->trusted.count = set->lmtp_trusted_networks.count;
	if (c->trusted.count > 0) {
		c->trusted.nets = xcalloc(c->trusted.count,
					  sizeof(*c->trusted.nets));
		memcpy(c->trusted.nets, set->lmtp_trusted_networks.nets,
		       c->trusted.count * sizeof(*c->trusted.nets));
	}
	pthread_mutex_lock(&config_lock);
	old = config_current;
	config_current = c;
	pthread_mutex_unlock(&config_lock);
	config_unref(&old);
}

void lmtp_server_init(struct auth *auth, const struct node_settings *set)
{
	server_auth = auth;
	if (gethostname(server_hostname, sizeof(server_hostname) - 1) < 0 ||
	    server_hostname[0] == '\0')
		str_printf(server_hostname, sizeof(server_hostname),
			   "localhost");
	/* a host name goes into replies: nothing that breaks a line */
	for (char *p = server_hostname; *p != '\0'; p++) {
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			*p = '_';
	}
	lmtp_server_config_install(set);
}

void lmtp_server_deinit(void)
{
	pthread_mutex_lock(&config_lock);
	struct lmtp_config *old = config_current;
	config_current = NULL;
	pthread_mutex_unlock(&config_lock);
	config_unref(&old);
}

/* ---- session ------------------------------------------------------------- */

enum lmtp_state {
	LMTP_STATE_INIT = 0,    /* greeted: waiting for LHLO */
	LMTP_STATE_READY,       /* after LHLO: MAIL starts a transaction */
	LMTP_STATE_MAIL,        /* in a transaction: RCPT, DATA */
	LMTP_STATE_RCPT_LOOKUP, /* a recipient's passdb lookup is in flight */
	LMTP_STATE_DATA,        /* reading the message */
	LMTP_STATE_CLOSING,     /* closed, to be freed from the free timer */
	LMTP_STATE_COUNT
};
static const char *const lmtp_state_names[LMTP_STATE_COUNT] = {
	[LMTP_STATE_INIT] = "init",
	[LMTP_STATE_READY] = "ready",
	[LMTP_STATE_MAIL] = "mail",
	[LMTP_STATE_RCPT_LOOKUP] = "rcpt-lookup",
	[LMTP_STATE_DATA] = "data",
	[LMTP_STATE_CLOSING] = "closing",
};

struct lmtp_rcpt {
	char *addr; /* the forward path as sent (between < >) */
	char *user; /* canonical user from the passdb */
	char *dir;  /* its INBOX Maildir */
};

/* The transaction in flight: MAIL to the end of DATA. */
struct lmtp_tx {
	char *from; /* reverse path; "" for <> */
	struct lmtp_rcpt *rcpts;
	size_t rcpt_count;
	char *pending_addr; /* RCPT being looked up */
	char *pending_detail; /* its "+detail", NULL when none */
	struct smtp_data_decoder *decoder;
	uint8_t *mem;   /* the first LMTP_SPOOL_MEM bytes (DATA only) */
	size_t mem_len; /* bytes in mem not yet in the file */
	int fd;         /* spool file, -1 when the message fits mem */
	uint64_t file_len;
	int spool_errno; /* the spool file could not be written */
};

struct lmtp_worker {
	struct net_worker *worker;
	struct lmtp_session *sessions; /* doubly linked */
	unsigned int count;
	bool draining;
};

struct lmtp_session {
	struct lmtp_session *prev, *next;
	struct lmtp_worker *lw;
	struct lmtp_config *cfg;
	struct conn *conn;
	struct smtp_parser *parser;
	enum lmtp_state state;
	struct log_ctx log;
	char session_id[LOG_SESSION_ID_LEN + 1];
	char ip[NET_ADDR_STR_MAX];
	unsigned int bad_commands;
	unsigned int tx_seq;
	/* the deliveries of a DATA run on the I/O pool (io_pool.h): while
	 * busy the loop leaves the session alone */
	bool busy;
	_Atomic bool job_running;
	const char *pending_close;

	uint8_t in[IN_BUF_SIZE];
	size_t in_pos, in_len;
	struct buf *out;
	const char *close_reason; /* close once out is written */

	struct auth_request *auth_req;
	struct net_timer *idle_timer;
	struct net_timer *free_timer;
	struct lmtp_tx tx;
};

static _Thread_local struct lmtp_worker *worker_state;

static void session_pump(struct lmtp_session *s);

static void session_set_state(struct lmtp_session *s, enum lmtp_state st)
{
	log_ctx_debug(&s->log, "lmtp: state %s -> %s",
		      lmtp_state_names[s->state], lmtp_state_names[st]);
	s->state = st;
}

static void reply(struct lmtp_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void reply(struct lmtp_session *s, const char *fmt, ...)
{
	char line[LMTP_REPLY_MAX];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2)
		n = str_printf(line, sizeof(line) - 2,
			       "451 4.3.0 Reply too long");
	memcpy(line + n, "\r\n", 2);
	if (buf_append(s->out, line, (size_t)n + 2) < 0)
		s->close_reason = "output buffer full";
}

/* An address for a reply: printable, at most LMTP_ADDR_SHOW_MAX bytes. */
#define ADDR_FMT(a) (int)(strlen(a) > LMTP_ADDR_SHOW_MAX ? \
			  LMTP_ADDR_SHOW_MAX : strlen(a)), (a)

static void tx_reset(struct lmtp_session *s)
{
	struct lmtp_tx *tx = &s->tx;

	free(tx->from);
	for (size_t i = 0; i < tx->rcpt_count; i++) {
		free(tx->rcpts[i].addr);
		free(tx->rcpts[i].user);
		free(tx->rcpts[i].dir);
	}
	free(tx->rcpts);
	free(tx->pending_addr);
	free(tx->pending_detail);
	smtp_data_decoder_free(&tx->decoder);
	free(tx->mem);
	if (tx->fd >= 0)
		close(tx->fd);
	memset(tx, 0, sizeof(*tx));
	tx->fd = -1;
}

static void session_free_cb(void *context)
{
	struct lmtp_session *s = context;
	struct lmtp_worker *lw = s->lw;

	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		lw->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	lw->count--;
	auth_request_cancel(&s->auth_req);
	net_timer_free(&s->idle_timer);
	net_timer_free(&s->free_timer);
	conn_free(&s->conn);
	smtp_parser_free(&s->parser);
	buf_free(&s->out);
	tx_reset(s);
	config_unref(&s->cfg);
	free(s);
}

/* Ends the session (logged with reason); the memory goes from a timer,
 * never inside a callback of the session. */
static void session_close(struct lmtp_session *s, const char *reason)
{
	if (s->state == LMTP_STATE_CLOSING)
		return;
	if (s->busy) {
		if (s->pending_close == NULL)
			s->pending_close = reason;
		conn_want(s->conn, false, false);
		return;
	}
	log_ctx_info(&s->log, "lmtp: Disconnected: %s", reason);
	session_set_state(s, LMTP_STATE_CLOSING);
	auth_request_cancel(&s->auth_req);
	conn_want(s->conn, false, false);
	net_timer_stop(s->idle_timer);
	net_timer_start(s->free_timer, 0, false);
}

static void bad_command(struct lmtp_session *s)
{
	if (++s->bad_commands >= s->cfg->max_bad_commands) {
		reply(s, "421 4.7.0 Too many invalid commands");
		s->close_reason = "Too many invalid commands";
	}
}

static void idle_restart(struct lmtp_session *s)
{
	if (s->cfg->timeout_msecs > 0)
		net_timer_start(s->idle_timer,
				(unsigned int)s->cfg->timeout_msecs, false);
}

/* ---- the user's Maildir --------------------------------------------------- */

/* mkdir -p of dir's parents (0700), then dir as a Maildir. 0 or -1 with
 * a message in err. */
static int maildir_ensure(const char *dir, char *err, size_t errsize)
{
	char path[MAILDIR_PATH_MAX];
	struct maildir_error merr;

	if (str_printf(path, sizeof(path), "%s", dir) < 0) {
		str_printf(err, errsize, "path too long");
		return -1;
	}
	for (char *p = path + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0700) == -1 && errno != EEXIST) {
			str_printf(err, errsize, "mkdir %s: %s", path,
				   strerror(errno));
			return -1;
		}
		*p = '/';
	}
	if (maildir_create(dir, &merr) < 0) {
		str_printf(err, errsize, "%s", merr.msg);
		return -1;
	}
	return 0;
}

/* ---- spool ----------------------------------------------------------------- */


/* An unlinked file in dir/tmp/ (same file system as the mail). */
static int spool_file_open(const char *dir)
{
	char path[MAILDIR_PATH_MAX];
	int fd = -1;

#ifdef O_TMPFILE
	if (str_printf(path, sizeof(path), "%s/tmp", dir) < 0) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = open(path, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR &&
			errno != EINVAL))
		return fd;
#endif
	if (str_printf(path, sizeof(path), "%s/tmp/lmtp-spool.XXXXXX", dir) <
	    0) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = mkstemp(path);
	if (fd >= 0)
		(void)unlink(path);
	return fd;
}

/* Adds message bytes: to mem while it has room, else mem goes to the file
 * and the bytes after it. A file error is kept for the end of DATA. */
static void spool_add(struct lmtp_session *s, const uint8_t *p, size_t len)
{
	struct lmtp_tx *tx = &s->tx;

	if (tx->spool_errno != 0)
		return;
	if (tx->mem_len + len <= LMTP_SPOOL_MEM) {
		memcpy(tx->mem + tx->mem_len, p, len);
		tx->mem_len += len;
		return;
	}
	if (tx->fd < 0) {
		tx->fd = spool_file_open(tx->rcpts[0].dir);
		if (tx->fd < 0) {
			tx->spool_errno = errno;
			log_ctx_warn(&s->log, "lmtp: spool file in %s/tmp",
				     tx->rcpts[0].dir);
			return;
		}
	}
	if (fd_write_all(tx->fd, tx->mem, tx->mem_len) < 0 ||
	    fd_write_all(tx->fd, p, len) < 0) {
		tx->spool_errno = errno;
		log_ctx_warn(&s->log, "lmtp: spool file write");
		return;
	}
	tx->file_len += tx->mem_len + len;
	tx->mem_len = 0;
}

/* ---- delivery ---------------------------------------------------------------- */

/* Writes the message for r into its INBOX: returns 1 when durable (the
 * file name in name_r), -1 with err filled. */
static int deliver_one(struct lmtp_session *s, const struct lmtp_rcpt *r,
		       char *name_r, size_t name_size,
		       struct maildir_error *err)
{
	struct lmtp_tx *tx = &s->tx;
	uint8_t chunk[LMTP_COPY_CHUNK];
	char hdr[2 * LMTP_REPLY_MAX];

	/* Dovecot's lmtp prepends these two (it adds Received: as well) */
	int n = str_printf(hdr, sizeof(hdr),
			   "Return-Path: <%s>\r\nDelivered-To: %s\r\n",
			   tx->from, r->addr);
	if (n < 0) {
		err->kind = MAILDIR_ERR_INVALID;
		err->errnum = 0;
		str_printf(err->msg, sizeof(err->msg), "addresses too long");
		return -1;
	}
	struct maildir_save *sv = maildir_save_begin(r->dir, 0, err);
	if (sv == NULL)
		return -1;
	if (maildir_save_write(sv, hdr, (size_t)n, err) < 0)
		goto fail;
	for (uint64_t off = 0; off < tx->file_len;) {
		size_t want = sizeof(chunk);
		if (tx->file_len - off < want)
			want = (size_t)(tx->file_len - off);
		ssize_t got = pread(tx->fd, chunk, want, (off_t)off);
		if (got <= 0) {
			err->kind = MAILDIR_ERR_IO;
			err->errnum = got < 0 ? errno : EIO;
			str_printf(err->msg, sizeof(err->msg),
				   "spool read: %s", strerror(err->errnum));
			goto fail;
		}
		if (maildir_save_write(sv, chunk, (size_t)got, err) < 0)
			goto fail;
		off += (uint64_t)got;
	}
	if (tx->mem_len > 0 &&
	    maildir_save_write(sv, tx->mem, tx->mem_len, err) < 0)
		goto fail;
	return maildir_save_finish(&sv, NULL, name_r, name_size, err) < 0 ? -1
									   : 1;
fail:
	maildir_save_abort(&sv);
	return -1;
}

/* One reply per accepted recipient, in RCPT order, each after its file is
 * durable. */
static void deliver_all(struct lmtp_session *s)
{
	struct lmtp_tx *tx = &s->tx;
	char name[MAILDIR_NAME_MAX + 1], id[LOG_SESSION_ID_LEN + 16];
	uint64_t size = smtp_data_decoder_size(tx->decoder);

	str_printf(id, sizeof(id), "%s-%u", s->session_id, ++s->tx_seq);
	for (size_t i = 0; i < tx->rcpt_count; i++) {
		const struct lmtp_rcpt *r = &tx->rcpts[i];
		struct maildir_error err = { 0 };
		int errnum = tx->spool_errno;

		if (errnum == 0 &&
		    deliver_one(s, r, name, sizeof(name), &err) > 0) {
			log_ctx_info(&s->log, "lmtp: %s: msgid=%s: saved mail "
				     "to INBOX as %s (size=%llu)", r->user, id,
				     name, (unsigned long long)size);
			reply(s, "250 2.0.0 <%.*s> %s Saved", ADDR_FMT(r->addr),
			      id);
			continue;
		}
		if (errnum == 0 && err.kind == MAILDIR_ERR_IO)
			errnum = err.errnum;
		log_ctx_error(&s->log, "lmtp: %s: msgid=%s: save to %s failed: "
			      "%s", r->user, id, r->dir,
			      tx->spool_errno != 0 ? strerror(tx->spool_errno)
						   : err.msg);
		if (errnum == ENOSPC || errnum == EDQUOT)
			reply(s, "452 4.2.2 <%.*s> Mailbox is full",
			      ADDR_FMT(r->addr));
		else
			reply(s, "451 4.3.0 <%.*s> Temporary internal error",
			      ADDR_FMT(r->addr));
	}
}

static struct io_pool *server_io;

void lmtp_server_set_io_pool(struct io_pool *pool)
{
	server_io = pool;
}

static void deliver_job(void *context)
{
	struct lmtp_session *s = context;

	for (size_t i = 0; i < s->tx.rcpt_count; i++)
		io_pool_test_delay(s->tx.rcpts[i].user);
	deliver_all(s);
}

static void deliver_done(struct net_worker *worker, void *context)
{
	struct lmtp_session *s = context;
	(void)worker;

	s->busy = false;
	tx_reset(s);
	session_set_state(s, LMTP_STATE_READY);
	if (s->pending_close != NULL) {
		session_close(s, s->pending_close);
		return;
	}
	session_pump(s);
}

static void data_end(struct lmtp_session *s, bool too_big)
{
	struct lmtp_tx *tx = &s->tx;

	/* the fsyncs of a delivery wait on the disk: on the pool, so that a
	 * slow disk does not stall the other sessions of this worker */
	if (!too_big && server_io != NULL) {
		s->busy = true;
		if (io_pool_submit(server_io, s->lw->worker, deliver_job,
				   deliver_done, s, &s->job_running) == 0) {
			conn_want(s->conn, false, false);
			return;
		}
		s->busy = false;
	}

	if (too_big) {
		log_ctx_info(&s->log, "lmtp: message too big (%llu bytes, "
			     "lmtp_max_message_size=%llu)",
			     (unsigned long long)smtp_data_decoder_size(tx->decoder),
			     (unsigned long long)s->cfg->max_message_size);
		for (size_t i = 0; i < tx->rcpt_count; i++)
			reply(s, "552 5.3.4 <%.*s> Message too big for system",
			      ADDR_FMT(tx->rcpts[i].addr));
	} else {
		deliver_all(s);
	}
	tx_reset(s);
	session_set_state(s, LMTP_STATE_READY);
}

/* Decodes what is in s->in into the spool, up to the end of data. */
static void data_input(struct lmtp_session *s)
{
	uint8_t out[LMTP_DECODE_CHUNK];

	idle_restart(s);
	while (s->in_pos < s->in_len) {
		size_t consumed = 0, produced = 0;
		enum smtp_data_result r = smtp_data_decode(
		    s->tx.decoder, s->in + s->in_pos, s->in_len - s->in_pos,
		    &consumed, out, sizeof(out), &produced);
		if (produced > 0)
			spool_add(s, out, produced);
		s->in_pos += consumed;
		smtp_parser_advance(s->parser, consumed);
		if (r != SMTP_DATA_MORE) {
			data_end(s, r == SMTP_DATA_TOO_BIG);
			return;
		}
	}
}

/* ---- RCPT lookup ------------------------------------------------------------ */

static void rcpt_lookup_done(const struct auth_result *res, void *context)
{
	struct lmtp_session *s = context;
	struct lmtp_tx *tx = &s->tx;
	char *addr = tx->pending_addr;
	char dir[MAILDIR_PATH_MAX], err[512];
	const char *error;

	s->auth_req = NULL;
	tx->pending_addr = NULL;
	session_set_state(s, LMTP_STATE_MAIL);
	switch (res->code) {
	case AUTH_RESULT_OK:
	case AUTH_RESULT_NOLOGIN: /* nologin stops logins, not mail */
		if (res->user == NULL)
			goto unknown;
		if (node_mail_location_expand(s->cfg->mail_location,
					      str_cstr(res->user), dir,
					      sizeof(dir), &error) < 0) {
			log_ctx_error(&s->log, "lmtp: %s: mail_location: %s",
				      res->user, error);
			reply(s, "451 4.3.0 <%.*s> Temporary internal error",
			      ADDR_FMT(addr));
			break;
		}
		if (maildir_ensure(dir, err, sizeof(err)) < 0) {
			log_ctx_error(&s->log, "lmtp: %s: INBOX %s: %s",
				      res->user, dir, err);
			reply(s, "451 4.3.0 <%.*s> Temporary internal error",
			      ADDR_FMT(addr));
			break;
		}
		/* user+folder@: into that folder when it exists
		 * (lmtp_save_to_detail_mailbox), else INBOX */
		if (tx->pending_detail != NULL &&
		    s->cfg->save_to_detail_mailbox) {
			char fdir[MAILDIR_PATH_MAX];
			struct maildir_error merr;
			if (maildir_folder_path(dir, str_cstr(tx->pending_detail),
						fdir, sizeof(fdir), &merr) == 0 &&
			    maildir_exists(fdir) && strcmp(fdir, dir) != 0)
				str_copy(str_cstr(fdir), dir, sizeof(dir));
		}
		tx->rcpts = xreallocarray(tx->rcpts, tx->rcpt_count + 1,
					  sizeof(*tx->rcpts));
		tx->rcpts[tx->rcpt_count++] = (struct lmtp_rcpt){
			.addr = addr,
			.user = xstrdup(res->user),
			.dir = xstrdup(dir),
		};
		addr = NULL;
		reply(s, "250 2.1.5 OK");
		break;
	case AUTH_RESULT_UNKNOWN_USER:
	case AUTH_RESULT_FAILED:
	unknown:
		log_ctx_info(&s->log, "lmtp: rcpt <%.*s>: unknown user (%s)",
			     ADDR_FMT(addr),
			     res->log_reason != NULL ? res->log_reason : "-");
		/* Dovecot's words */
		reply(s, "550 5.1.1 <%.*s> User doesn't exist: %.*s",
		      ADDR_FMT(addr), ADDR_FMT(addr));
		break;
	case AUTH_RESULT_TEMPFAIL:
	default:
		log_ctx_warnx(&s->log, "lmtp: rcpt <%.*s>: lookup failed (%s)",
			      ADDR_FMT(addr),
			      res->log_reason != NULL ? res->log_reason : "-");
		reply(s, "451 4.3.0 <%.*s> Temporary user lookup failure",
		      ADDR_FMT(addr));
		break;
	}
	free(addr);
	session_pump(s);
}

/* ---- commands -------------------------------------------------------------- */

static void cmd_lhlo(struct lmtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	tx_reset(s);
	reply(s, "250-%s\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n"
	      "250-PIPELINING\r\n250 SIZE %llu", server_hostname,
	      (unsigned long long)s->cfg->max_message_size);
	session_set_state(s, LMTP_STATE_READY);
}

static void cmd_mail(struct lmtp_session *s, const struct smtp_command *cmd)
{
	for (size_t i = 0; i < cmd->param_count; i++) {
		const struct smtp_param *p = &cmd->params[i];
		if (str_eq_nocase(p->keyword, STR("SIZE"))) {
			uint64_t size;
			if (!p->has_value ||
			    !str_to_u64(p->value, UINT64_MAX, &size)) {
				reply(s, "501 5.5.4 Invalid SIZE parameter");
				return;
			}
			if (size > s->cfg->max_message_size) {
				reply(s, "552 5.3.4 Message size exceeds fixed "
				      "maximum message size");
				return;
			}
		} else if (str_eq_nocase(p->keyword, STR("BODY"))) {
			if (!p->has_value ||
			    (!str_eq_nocase(p->value, STR("7BIT")) &&
			     !str_eq_nocase(p->value, STR("8BITMIME")))) {
				reply(s, "501 5.5.4 Invalid BODY parameter");
				return;
			}
		} else {
			reply(s, "555 5.5.4 Unsupported parameter");
			return;
		}
	}
	tx_reset(s);
	s->tx.from = cmd->path.null ? xstrdup("")
				    : xstrndup(cmd->path.raw.p,
					       cmd->path.raw.len);
	reply(s, "250 2.1.0 OK");
	session_set_state(s, LMTP_STATE_MAIL);
}

static void cmd_rcpt(struct lmtp_session *s, const struct smtp_command *cmd)
{
	const struct smtp_path *path = &cmd->path;

	if (cmd->param_count > 0) {
		reply(s, "555 5.5.4 Unsupported parameter");
		return;
	}
	if (s->tx.rcpt_count >= s->cfg->max_recipients) {
		reply(s, "452 4.5.3 Too many recipients");
		return;
	}
	/* the passdb's name: local part (without "+detail" when
	 * recipient_delimiter is set, as Dovecot), @domain if any */
	struct str local = path->local;
	free(s->tx.pending_detail);
	s->tx.pending_detail = NULL;
	size_t dlen = strlen(s->cfg->recipient_delimiter);
	for (size_t i = 1; dlen > 0 && i + dlen < local.len; i++) {
		if (memcmp(local.p + i, s->cfg->recipient_delimiter, dlen) != 0)
			continue;
		s->tx.pending_detail = xstrndup(local.p + i + dlen,
						local.len - i - dlen);
		local.len = i;
		break;
	}
	char *name = xmalloc(local.len + path->domain.len + 2);
	memcpy(name, local.p, local.len);
	size_t len = local.len;
	if (path->domain.len > 0) {
		name[len++] = '@';
		memcpy(name + len, path->domain.p, path->domain.len);
		len += path->domain.len;
	}
	name[len] = '\0';
	const struct auth_request_params params = {
		.user = str_from(name, len),
		.authzid = STR_NULL,
		.password = STR_NULL,
		.service = "lmtp",
		.client_ip = s->ip,
		.session_id = s->session_id,
		.flags = AUTH_REQUEST_FLAG_LOOKUP_ONLY,
	};
	s->tx.pending_addr = xstrndup(path->raw.p, path->raw.len);
	session_set_state(s, LMTP_STATE_RCPT_LOOKUP);
	s->auth_req = auth_request_new(server_auth,
				       net_worker_base(s->lw->worker), &params,
				       rcpt_lookup_done, s);
	free(name);
}

static void cmd_data(struct lmtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	if (s->tx.rcpt_count == 0) {
		reply(s, "554 5.5.1 No valid recipients");
		return;
	}
	s->tx.decoder = smtp_data_decoder_new(s->cfg->max_message_size);
	s->tx.mem = xmalloc(LMTP_SPOOL_MEM);
	reply(s, "354 OK");
	session_set_state(s, LMTP_STATE_DATA);
}

static void cmd_rset(struct lmtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	tx_reset(s);
	if (s->state == LMTP_STATE_MAIL)
		session_set_state(s, LMTP_STATE_READY);
	reply(s, "250 2.0.0 OK");
}

static void cmd_noop(struct lmtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	reply(s, "250 2.0.0 OK");
}

static void cmd_vrfy(struct lmtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	reply(s, "252 2.3.3 Try RCPT instead");
}

static void cmd_quit(struct lmtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	reply(s, "221 2.0.0 Bye");
	s->close_reason = "Logged out";
}

static void cmd_helo(struct lmtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	reply(s, "500 5.5.1 This is LMTP: use LHLO");
	bad_command(s);
}

static void cmd_unsupported(struct lmtp_session *s,
			    const struct smtp_command *cmd)
{
	(void)cmd;
	reply(s, "502 5.5.1 Command not implemented");
	bad_command(s);
}

#define ST(x) (1u << (x))
#define ST_ANY (ST(LMTP_STATE_INIT) | ST(LMTP_STATE_READY) | ST(LMTP_STATE_MAIL))

struct lmtp_command {
	enum smtp_verb verb;
	unsigned int states; /* where it may run: ST() bits */
	const char *refusal; /* the reply elsewhere */
	void (*run)(struct lmtp_session *s, const struct smtp_command *cmd);
};

static const struct lmtp_command lmtp_commands[] = {
	{ SMTP_VERB_LHLO, ST_ANY, NULL, cmd_lhlo },
	{ SMTP_VERB_MAIL, ST(LMTP_STATE_READY),
	  "503 5.5.1 Bad sequence of commands (LHLO first, one MAIL per "
	  "transaction)", cmd_mail },
	{ SMTP_VERB_RCPT, ST(LMTP_STATE_MAIL), "503 5.5.1 MAIL needed first",
	  cmd_rcpt },
	{ SMTP_VERB_DATA, ST(LMTP_STATE_MAIL), "503 5.5.1 MAIL needed first",
	  cmd_data },
	{ SMTP_VERB_RSET, ST_ANY, NULL, cmd_rset },
	{ SMTP_VERB_NOOP, ST_ANY, NULL, cmd_noop },
	{ SMTP_VERB_VRFY, ST_ANY, NULL, cmd_vrfy },
	{ SMTP_VERB_QUIT, ST_ANY, NULL, cmd_quit },
	{ SMTP_VERB_HELO, ST_ANY, NULL, cmd_helo },
	{ SMTP_VERB_EHLO, ST_ANY, NULL, cmd_helo },
	{ SMTP_VERB_BDAT, ST_ANY, NULL, cmd_unsupported },
	{ SMTP_VERB_HELP, ST_ANY, NULL, cmd_unsupported },
	{ SMTP_VERB_STARTTLS, ST_ANY, NULL, cmd_unsupported },
	{ SMTP_VERB_AUTH, ST_ANY, NULL, cmd_unsupported },
	{ SMTP_VERB_XCLIENT, ST_ANY, NULL, cmd_unsupported },
};

static void run_command(struct lmtp_session *s, const struct smtp_command *cmd)
{
	for (size_t i = 0; i < sizeof(lmtp_commands) / sizeof(lmtp_commands[0]);
	     i++) {
		const struct lmtp_command *lc = &lmtp_commands[i];
		if (lc->verb != cmd->verb)
			continue;
		if ((lc->states & ST(s->state)) == 0) {
			reply(s, "%s", lc->refusal);
			bad_command(s);
			return;
		}
		lc->run(s, cmd);
		return;
	}
	reply(s, "500 5.5.2 Unknown command");
	bad_command(s);
}

static void parse_error(struct lmtp_session *s,
			const struct smtp_parse_error *err)
{
	switch (err->kind) {
	case SMTP_PARSE_ERR_TOO_LONG:
		reply(s, "500 5.5.2 Line too long");
		break;
	case SMTP_PARSE_ERR_BAD_PATH:
		reply(s, "501 %s Invalid address: %s",
		      err->verb == SMTP_VERB_MAIL ? "5.1.7" : "5.1.3",
		      err->msg);
		break;
	case SMTP_PARSE_ERR_BAD_SYNTAX:
	case SMTP_PARSE_ERR_BAD_PARAM:
	case SMTP_PARSE_ERR_TOO_MANY_PARAMS:
		reply(s, "501 5.5.4 %s", err->msg);
		break;
	case SMTP_PARSE_ERR_NONE:
	case SMTP_PARSE_ERR_NUL:
	case SMTP_PARSE_ERR_EMPTY:
	case SMTP_PARSE_ERR_BAD_VERB:
	default:
		reply(s, "500 5.5.2 %s", err->msg);
		break;
	}
	bad_command(s);
}

/* Handles what is in s->in. Returns true when it made progress. */
static bool handle_input(struct lmtp_session *s)
{
	struct smtp_command cmd;
	struct smtp_parse_error perr;
	size_t consumed = 0;

	if (s->in_pos == s->in_len)
		return false;
	if (s->state == LMTP_STATE_DATA) {
		data_input(s);
		return true;
	}
	enum smtp_parse_result r =
	    smtp_parser_parse(s->parser, s->in + s->in_pos,
			      s->in_len - s->in_pos, &consumed, &cmd, &perr);
	s->in_pos += consumed;
	if (r == SMTP_PARSE_MORE)
		return false;
	idle_restart(s);
	if (r == SMTP_PARSE_ERROR)
		parse_error(s, &perr);
	else
		run_command(s, &cmd);
	return true;
}

/* ---- I/O ----------------------------------------------------------------- */

static void session_pump(struct lmtp_session *s)
{
	while (s->state != LMTP_STATE_CLOSING) {
		if (s->busy) {
			conn_want(s->conn, false, false);
			return;
		}
		if (s->out->len > 0) {
			ssize_t n = conn_write(s->conn, s->out->data,
					       s->out->len);
			if (n > 0) {
				buf_consume(s->out, (size_t)n);
				continue;
			}
			if (n == CONN_AGAIN) {
				conn_want(s->conn, false, true);
				return;
			}
			session_close(s, conn_error(s->conn));
			return;
		}
		if (s->close_reason != NULL) {
			session_close(s, s->close_reason);
			return;
		}
		if (s->state == LMTP_STATE_RCPT_LOOKUP) {
			conn_want(s->conn, false, false);
			return;
		}
		if (handle_input(s))
			continue;
		s->in_pos = s->in_len = 0;
		ssize_t n = conn_read(s->conn, s->in, sizeof(s->in));
		if (n > 0) {
			s->in_len = (size_t)n;
			continue;
		}
		if (n == CONN_AGAIN) {
			conn_want(s->conn, true, false);
			return;
		}
		session_close(s, n == CONN_EOF ? "Connection closed"
					       : conn_error(s->conn));
		return;
	}
}

static void conn_cb(struct conn *c, enum conn_event ev, void *context)
{
	struct lmtp_session *s = context;
	(void)c;

	if (ev == CONN_EV_ERROR) {
		session_close(s, conn_error(s->conn));
		return;
	}
	session_pump(s);
}

/* Best effort: the line goes if the socket takes it now. */
static void close_with(struct lmtp_session *s, const char *line,
		       const char *reason)
{
	if (!s->busy) {
		reply(s, "%s", line);
		(void)conn_write(s->conn, s->out->data, s->out->len);
	}
	session_close(s, reason);
}

static void idle_timer_cb(void *context)
{
	struct lmtp_session *s = context;

	if (s->state == LMTP_STATE_RCPT_LOOKUP || s->busy)
		return;
	close_with(s, "421 4.4.2 Disconnected for inactivity",
		   "Disconnected for inactivity");
}

void lmtp_server_accept(struct net_worker *worker, int fd,
			const struct net_addr *peer,
			const struct net_addr *local, void *context)
{
	struct lmtp_worker *lw = worker_state;
	struct event_base *base = net_worker_base(worker);
	struct lmtp_session *s = xcalloc(1, sizeof(*s));
	(void)local;
	(void)context;

	s->lw = lw;
	s->cfg = config_ref();
	s->tx.fd = -1;
	/* answers are whole in our buffer: Nagle would only add a
	 * delayed-ACK stall between two writes of one answer */
	(void)net_set_nodelay(fd, true);
	s->conn = conn_new(base, fd, conn_cb, s);
	const struct smtp_parser_limits limits = {
		.max_line_len = s->cfg->max_line_length,
		.max_params = LMTP_MAX_PARAMS,
	};
	s->parser = smtp_parser_new(&limits);
	s->out = buf_new(1024, OUT_MAX);
	s->idle_timer = net_timer_new(base, idle_timer_cb, s);
	s->free_timer = net_timer_new(base, session_free_cb, s);
	net_addr_ip_str(peer, s->ip, sizeof(s->ip));
	log_session_id_new(s->session_id);
	log_ctx_init(&s->log);
	log_ctx_set_rip(&s->log, &peer->u.sa);
	log_ctx_set_session(&s->log, s->session_id);
	s->next = lw->sessions;
	if (lw->sessions != NULL)
		lw->sessions->prev = s;
	lw->sessions = s;
	lw->count++;
	if (!config_nets_match(&s->cfg->trusted, &peer->u.sa)) {
		log_ctx_info(&s->log, "lmtp: client not in "
			     "lmtp_trusted_networks: refused");
		close_with(s, "554 5.7.1 Access denied",
			   "LMTP client not trusted");
		return;
	}
	if (lw->draining) {
		close_with(s, "421 4.3.2 Server shutting down",
			   "Server shutting down");
		return;
	}
	log_ctx_debug(&s->log, "lmtp: connected");
	idle_restart(s);
	reply(s, "220 %s mailring-backend ready", server_hostname);
	session_pump(s);
}

/* ---- workers --------------------------------------------------------------- */

void lmtp_server_worker_init(struct net_worker *worker)
{
	struct lmtp_worker *lw = xcalloc(1, sizeof(*lw));
	lw->worker = worker;
	worker_state = lw;
}

void lmtp_server_worker_stopping(struct net_worker *worker)
{
	struct lmtp_worker *lw = worker_state;
	(void)worker;

	lw->draining = true;
	/* nothing is acknowledged between callbacks, so closing now loses
	 * nothing: the MTA retries what got no 250 */
	for (struct lmtp_session *s = lw->sessions; s != NULL; s = s->next) {
		if (s->state != LMTP_STATE_CLOSING)
			close_with(s, "421 4.3.2 Server shutting down",
				   "Server shutting down");
	}
}

void lmtp_server_worker_deinit(struct net_worker *worker)
{
	struct lmtp_worker *lw = worker_state;
	(void)worker;

	if (lw == NULL)
		return;
	while (lw->sessions != NULL) {
		struct lmtp_session *s = lw->sessions;
		io_pool_job_wait(&s->job_running);
		s->busy = false;
		if (s->state != LMTP_STATE_CLOSING)
			session_close(s, "Server shutting down");
		session_free_cb(s);
	}
	free(lw);
	worker_state = NULL;
}
