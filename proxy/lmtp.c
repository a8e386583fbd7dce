/*
 * LMTP (RFC 2033) from MTAs to the backends, per recipient.
 *
 * Client side (one struct client with this protocol plugged in):
 *
 *   greeting 220 (only to login_trusted_networks; others get 554 and close)
 *   LHLO -> 250 with PIPELINING, 8BITMIME, ENHANCEDSTATUSCODES, SIZE
 *   MAIL FROM:<path> [SIZE=n] [BODY=7BIT|8BITMIME]
 *   RCPT TO:<path>   each one is looked up in the passdb (lookup only, no
 *                    password) and routed like a login: host= pins it,
 *                    otherwise the director maps it (user or domain key);
 *                    unknown -> 550 5.1.1 at RCPT time
 *   DATA             the message is read through the dot-unstuffing
 *                    decoder into a spool in memory, never more than
 *                    lmtp_max_message_size (over it: 552 5.3.4 per
 *                    recipient once the message has ended, and the
 *                    session goes on)
 *   -> one backend connection per backend involved, in parallel:
 *      greeting, LHLO, MAIL FROM, its RCPTs (one at a time), DATA, the
 *      message dot-stuffed again, one reply per accepted RCPT, QUIT
 *   -> one reply per recipient, in RCPT order: the backend's own reply
 *      verbatim (its RCPT, MAIL or DATA refusal, or its final answer), or
 *      451 4.4.0 when its backend could not be reached or broke off.
 *   RSET, NOOP, VRFY (252), QUIT; everything else 500/502.
 *
 * Nothing is acknowledged before the backend acknowledged it: the client's
 * per-recipient 250 after DATA is the backend's 250.
 *
 * While a recipient is looked up or the message is delivered the client
 * is not read (its pipelined commands wait in the socket), so the session's
 * memory is the spool plus small fixed buffers, freed when the transaction
 * ends and in any case with the session.
 */
#include "lmtp.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "directing.h"
#include "smtp_parse.h"
#include "str.h"
#include "xmalloc.h"

#define LMTP_MAX_PARAMS 16
/* a backend's reply line, and one reply kept for the client: RFC 5321's
 * 512 bytes with the CRLF (the NUL takes the place of the CR). With at
 * most 100 recipients (lmtp_max_recipients) the replies after DATA always
 * fit the client's 64 KiB output buffer. */
#define LMTP_BACKEND_LINE_MAX 4096
#define LMTP_REPLY_MAX 511
#define LMTP_BACKEND_OUTPUT_MAX (64 * 1024)
/* message bytes queued to a backend per round */
#define LMTP_BODY_CHUNK (16 * 1024)
#define LMTP_SPOOL_INITIAL (64 * 1024)
/* address text shown in our own replies */
#define LMTP_ADDR_SHOW_MAX 256

enum lmtp_state {
	LMTP_STATE_INIT = 0,    /* greeted: waiting for LHLO */
	LMTP_STATE_READY,       /* after LHLO: MAIL starts a transaction */
	LMTP_STATE_MAIL,        /* in a transaction: RCPT, DATA */
	LMTP_STATE_RCPT_LOOKUP, /* a recipient's passdb lookup is in flight */
	LMTP_STATE_DATA,        /* reading the message */
	LMTP_STATE_DELIVERING,  /* the backends have the message */
	LMTP_STATE_COUNT
};

static const char *const lmtp_state_names[LMTP_STATE_COUNT] = {
	[LMTP_STATE_INIT] = "init",
	[LMTP_STATE_READY] = "ready",
	[LMTP_STATE_MAIL] = "mail",
	[LMTP_STATE_RCPT_LOOKUP] = "rcpt-lookup",
	[LMTP_STATE_DATA] = "data",
	[LMTP_STATE_DELIVERING] = "delivering",
};

enum lmtp_backend_step {
	LMTP_BE_CONNECTING = 0, /* TCP connect under way */
	LMTP_BE_GREETING,       /* waiting for 220 */
	LMTP_BE_LHLO,           /* LHLO sent */
	LMTP_BE_MAIL,           /* MAIL FROM sent */
	LMTP_BE_RCPT,           /* RCPT of rcpts[next] sent */
	LMTP_BE_DATA,           /* DATA sent: waiting for 354 */
	LMTP_BE_BODY,           /* writing the message */
	LMTP_BE_REPLIES,        /* one reply per accepted recipient */
	LMTP_BE_QUIT,           /* QUIT being sent; closed right after */
	LMTP_BE_DONE,           /* connection closed */
};

struct lmtp_rcpt {
	char *addr;          /* the path as sent, between '<' and '>' */
	char *user;          /* canonical user from the passdb */
	char *director_key;  /* set while counted as a session in the director */
	size_t backend;      /* index into c->cfg->backends */
	bool backend_ok;     /* the backend accepted the RCPT */
	char *reply;         /* final reply, lines joined by CRLF, no last CRLF */
};

struct lmtp_session;

/* One backend connection of a delivery. */
struct lmtp_backend {
	struct lmtp_session *s;
	size_t backend;       /* index into c->cfg->backends */
	struct net_addr addr;
	struct conn *conn;
	struct net_timer *timer;
	struct buf *input;
	struct buf *output;
	enum lmtp_backend_step step;
	size_t *rcpts;        /* indices into s->rcpts */
	size_t rcpt_count;
	size_t next;          /* the recipient being sent or answered */
	size_t accepted;
	uint64_t body_off;    /* spool bytes queued so far */
	bool line_start;      /* body_off is at the start of a line */
	char reply[LMTP_REPLY_MAX]; /* the reply being assembled */
	size_t reply_len;
};

struct lmtp_session {
	struct client *client;
	enum lmtp_state state;
	struct smtp_parser *parser;
	struct auth_request *auth_req;
	char *pending_addr;   /* the RCPT waiting for its lookup */
	/* ... and then for the shared store (where its user is mapped) */
	struct directing_lookup *ring_lookup;
	char *pending_user;
	char *pending_tag;
	struct net_timer *finish_timer; /* delivery over: answer (deferred) */
	char hostname[128];

	/* the transaction */
	char *from_addr;      /* reverse path as sent */
	char *mail_from;      /* "<path>[ BODY=x]" for the backends */
	struct lmtp_rcpt *rcpts;
	size_t rcpt_count;
	size_t rcpt_alloc;
	struct smtp_data_decoder *decoder;
	struct buf *spool;    /* the message, unstuffed */
	struct lmtp_backend *backends;
	size_t backend_count;
	size_t backends_pending;
};

static struct log_ratelimit lmtp_log_rl = LOG_RATELIMIT_INIT(1000, 10);

static void lmtp_backend_event(struct conn *conn, enum conn_event ev,
			       void *context);
static void lmtp_backend_flush(struct lmtp_backend *be);

/* ---- helpers ------------------------------------------------------------- */

/* A heap string from a format (vsnprintf twice, never truncated). */
static char *lmtp_strfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *lmtp_strfmt(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		fatalx("lmtp: bad format");
	char *s = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

/* An address as shown in our replies: at most LMTP_ADDR_SHOW_MAX bytes. */
#define ADDR_FMT(a) (int)(strlen(a) > LMTP_ADDR_SHOW_MAX ? LMTP_ADDR_SHOW_MAX : strlen(a)), (a)

static void lmtp_reply(struct client *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void lmtp_reply(struct client *c, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2)
		fatalx("lmtp: reply does not fit: %s", fmt); /* a bug of ours */
	line[n++] = '\r';
	line[n++] = '\n';
	client_send(c, line, (size_t)n);
}

static bool lmtp_client_gone(const struct client *c)
{
	return c->destroyed || c->state == CLIENT_STATE_CLOSING;
}

static void lmtp_set_state(struct client *c, enum lmtp_state state)
{
	struct lmtp_session *s = c->proto_state;
	enum client_state cs = CLIENT_STATE_PRELOGIN;

	if (log_level_enabled(LOG_LEVEL_DEBUG)) {
		struct log_ctx ctx;
		client_log_ctx(c, &ctx);
		log_ctx_debug(&ctx, "lmtp: state %s -> %s",
			      lmtp_state_names[s->state], lmtp_state_names[state]);
	}
	s->state = state;
	if (state == LMTP_STATE_RCPT_LOOKUP)
		cs = CLIENT_STATE_AUTH;
	else if (state == LMTP_STATE_DELIVERING)
		cs = CLIENT_STATE_BACKEND;
	/* the core reads the client only in PRELOGIN: lookups and
	 * deliveries leave pipelined commands in the socket */
	if (!lmtp_client_gone(c) && c->state != cs)
		client_set_state(c, cs);
}

static void lmtp_arm_timeout(struct client *c)
{
	net_timer_start(c->timer, (unsigned int)c->cfg->set.lmtp_timeout_msecs,
			false);
}

static void lmtp_count_bad(struct client *c)
{
	if (c->destroyed)
		return;
	c->bad_commands++;
	if (c->bad_commands < c->cfg->set.max_bad_commands)
		return;
	lmtp_reply(c, "421 4.7.0 Too many invalid commands");
	if (!c->destroyed)
		client_close_after_output(c, "Disconnected: Too many bad commands");
}

/* ---- the transaction ------------------------------------------------------ */

static void lmtp_backend_free(struct lmtp_backend *be)
{
	conn_free(&be->conn);
	net_timer_free(&be->timer);
	buf_free(&be->input);
	buf_free(&be->output);
	xfree(&be->rcpts);
}

/* Ends the transaction: backend connections, the spool, the recipients'
 * director sessions. */
static void lmtp_tx_reset(struct lmtp_session *s)
{
	for (size_t i = 0; i < s->backend_count; i++)
		lmtp_backend_free(&s->backends[i]);
	xfree(&s->backends);
	s->backend_count = 0;
	s->backends_pending = 0;
	for (size_t i = 0; i < s->rcpt_count; i++) {
		struct lmtp_rcpt *r = &s->rcpts[i];
		if (r->director_key != NULL)
			directing_session_end(r->director_key,
					      s->client->cfg->backends[r->backend].set->name);
		xfree(&r->director_key);
		xfree(&r->addr);
		xfree(&r->user);
		xfree(&r->reply);
	}
	xfree(&s->rcpts);
	s->rcpt_count = 0;
	s->rcpt_alloc = 0;
	xfree(&s->from_addr);
	xfree(&s->mail_from);
	smtp_data_decoder_free(&s->decoder);
	buf_free(&s->spool);
	if (s->finish_timer != NULL)
		net_timer_stop(s->finish_timer);
}

static void lmtp_log_rcpt(struct client *c, const char *addr, const char *user,
			  const char *backend, const char *result,
			  const char *reply)
{
	struct lmtp_session *s = c->proto_state;
	struct log_ctx ctx;
	struct log_fields f;

	client_log_ctx(c, &ctx);
	if (user != NULL)
		log_ctx_set_user(&ctx, str_cstr(user));
	if (backend != NULL)
		log_ctx_set_backend(&ctx, backend);
	log_fields_init(&f);
	log_field_atom(&f, "result", result);
	if (s->from_addr != NULL)
		log_field_str(&f, "from", s->from_addr);
	log_field_str(&f, "rcpt", addr);
	if (s->spool != NULL)
		log_field_uint(&f, "size", s->spool->len);
	if (reply != NULL)
		log_field_str(&f, "reply", reply);
	log_ctx_event(&ctx, LOG_LEVEL_INFO, "lmtp", &f);
}

/* ---- backend connections --------------------------------------------------- */

static struct client *be_client(const struct lmtp_backend *be)
{
	return be->s->client;
}

static const char *be_name(const struct lmtp_backend *be)
{
	return be_client(be)->cfg->backends[be->backend].set->name;
}

static void lmtp_backend_done(struct lmtp_backend *be)
{
	struct lmtp_session *s = be->s;

	if (be->step == LMTP_BE_DONE)
		return;
	be->step = LMTP_BE_DONE;
	/* may run inside the conn's own callback: nothing touches it after */
	conn_free(&be->conn);
	if (be->timer != NULL)
		net_timer_stop(be->timer);
	if (--s->backends_pending == 0)
		net_timer_start(s->finish_timer, 0, false);
}

/* The backend is unusable: its recipients without a reply get 451. */
static void lmtp_backend_fail(struct lmtp_backend *be, const char *reason)
{
	struct lmtp_session *s = be->s;
	size_t unanswered = 0;

	for (size_t i = 0; i < be->rcpt_count; i++) {
		struct lmtp_rcpt *r = &s->rcpts[be->rcpts[i]];
		if (r->reply != NULL)
			continue;
		r->reply = lmtp_strfmt("451 4.4.0 <%.*s> Backend unavailable",
				       ADDR_FMT(r->addr));
		unanswered++;
	}
	if (unanswered > 0) {
		struct log_ctx ctx;
		client_log_ctx(be_client(be), &ctx);
		log_ctx_set_backend(&ctx, be_name(be));
		log_ctx_warnx(&ctx, "lmtp: backend failed: %s (%zu recipients deferred)",
			      reason, unanswered);
	}
	lmtp_backend_done(be);
}

static int lmtp_backend_send(struct lmtp_backend *be, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int lmtp_backend_send(struct lmtp_backend *be, const char *fmt, ...)
{
	char *line;
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	line = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(line, (size_t)n + 1, fmt, ap);
	va_end(ap);
	int ret = buf_append(be->output, line, (size_t)n);
	free(line);
	if (ret < 0) {
		lmtp_backend_fail(be, "output to the backend over its limit");
		return -1;
	}
	lmtp_backend_flush(be);
	return be->step == LMTP_BE_DONE ? -1 : 0;
}

/* Queues up to LMTP_BODY_CHUNK bytes of the message, dot-stuffed again.
 * A line starts after any LF (also a bare one), so a backend that takes
 * bare LF as a line end can never see the end of the data early. */
static void lmtp_backend_fill_body(struct lmtp_backend *be)
{
	const struct buf *spool = be->s->spool;
	const uint8_t *p = spool->data;
	size_t len = spool->len;
	struct buf *out = be->output;

	while (be->body_off < len && out->len + 1 < LMTP_BODY_CHUNK) {
		size_t off = (size_t)be->body_off;
		if (be->line_start && p[off] == '.')
			buf_append_byte(out, '.');
		const uint8_t *nl = memchr(p + off, '\n', len - off);
		size_t end = nl != NULL ? (size_t)(nl - p) + 1 : len;
		size_t room = LMTP_BODY_CHUNK - out->len;
		if (end - off > room)
			end = off + room;
		buf_append(out, p + off, end - off);
		be->line_start = p[end - 1] == '\n';
		be->body_off = end;
	}
	if (be->body_off < len)
		return;
	if (len > 0 && !(len >= 2 && p[len - 2] == '\r' && p[len - 1] == '\n'))
		buf_append(out, "\r\n", 2);
	buf_append(out, ".\r\n", 3);
	be->step = LMTP_BE_REPLIES;
	be->next = 0;
}

static void lmtp_backend_flush(struct lmtp_backend *be)
{
	struct client *c = be_client(be);

	if (be->conn == NULL)
		return;
	for (;;) {
		if (be->output->len == 0 && be->step == LMTP_BE_BODY)
			lmtp_backend_fill_body(be);
		if (be->output->len == 0)
			break;
		ssize_t n = conn_write(be->conn, be->output->data, be->output->len);
		if (n == CONN_AGAIN)
			break;
		if (n == CONN_FAILED) {
			char reason[200];
			str_printf(reason, sizeof(reason), "write failed: %s",
				   conn_error(be->conn));
			lmtp_backend_fail(be, reason);
			return;
		}
		buf_consume(be->output, (size_t)n);
		net_timer_start(be->timer,
				(unsigned int)c->cfg->set.lmtp_timeout_msecs, false);
	}
	conn_want(be->conn, true, be->output->len > 0);
}

/* The next recipient this backend accepted, from be->next on; SIZE_MAX
 * when none is left. */
static size_t lmtp_backend_next_accepted(struct lmtp_backend *be)
{
	while (be->next < be->rcpt_count) {
		size_t idx = be->rcpts[be->next];
		if (be->s->rcpts[idx].backend_ok)
			return idx;
		be->next++;
	}
	return SIZE_MAX;
}

/* Every recipient of this backend has its reply: say goodbye and close
 * without waiting for the 221, so a slow QUIT never delays the client. */
static void lmtp_backend_quit(struct lmtp_backend *be)
{
	be->step = LMTP_BE_QUIT;
	if (lmtp_backend_send(be, "QUIT\r\n") < 0)
		return;
	lmtp_backend_done(be);
}

static void lmtp_backend_send_rcpt(struct lmtp_backend *be)
{
	const struct lmtp_rcpt *r = &be->s->rcpts[be->rcpts[be->next]];
	(void)lmtp_backend_send(be, "RCPT TO:<%s>\r\n", r->addr);
}

/* A whole reply (be->reply, code) arrived. */
static void lmtp_backend_reply(struct lmtp_backend *be, unsigned int code)
{
	struct lmtp_session *s = be->s;
	char reason[LMTP_REPLY_MAX + 64];
	unsigned int class = code / 100;

	switch (be->step) {
	case LMTP_BE_GREETING:
		if (code != 220)
			break;
		be->step = LMTP_BE_LHLO;
		(void)lmtp_backend_send(be, "LHLO %s\r\n", s->hostname);
		return;
	case LMTP_BE_LHLO:
		if (code != 250)
			break;
		be->step = LMTP_BE_MAIL;
		(void)lmtp_backend_send(be, "MAIL FROM:%s\r\n", s->mail_from);
		return;
	case LMTP_BE_MAIL:
		if (class != 2 && class != 4 && class != 5)
			break;
		if (class != 2) {
			/* the sender is refused: so is every recipient */
			for (size_t i = 0; i < be->rcpt_count; i++) {
				struct lmtp_rcpt *r = &s->rcpts[be->rcpts[i]];
				r->reply = xstrdup(be->reply);
			}
			lmtp_backend_quit(be);
			return;
		}
		be->step = LMTP_BE_RCPT;
		be->next = 0;
		lmtp_backend_send_rcpt(be);
		return;
	case LMTP_BE_RCPT: {
		if (class != 2 && class != 4 && class != 5)
			break;
		struct lmtp_rcpt *r = &s->rcpts[be->rcpts[be->next]];
		if (class == 2) {
			r->backend_ok = true;
			be->accepted++;
		} else {
			r->reply = xstrdup(be->reply);
		}
		if (++be->next < be->rcpt_count) {
			lmtp_backend_send_rcpt(be);
			return;
		}
		if (be->accepted == 0) {
			lmtp_backend_quit(be);
			return;
		}
		be->step = LMTP_BE_DATA;
		(void)lmtp_backend_send(be, "DATA\r\n");
		return;
	}
	case LMTP_BE_DATA:
		if (code == 354) {
			be->step = LMTP_BE_BODY;
			be->body_off = 0;
			be->line_start = true;
			lmtp_backend_flush(be);
			return;
		}
		if (class != 4 && class != 5)
			break;
		/* DATA refused: the accepted recipients get that answer */
		for (size_t i = 0; i < be->rcpt_count; i++) {
			struct lmtp_rcpt *r = &s->rcpts[be->rcpts[i]];
			if (r->backend_ok && r->reply == NULL)
				r->reply = xstrdup(be->reply);
		}
		lmtp_backend_quit(be);
		return;
	case LMTP_BE_REPLIES: {
		if (class != 2 && class != 4 && class != 5)
			break;
		size_t idx = lmtp_backend_next_accepted(be);
		if (idx == SIZE_MAX)
			break; /* more replies than recipients */
		s->rcpts[idx].reply = xstrdup(be->reply);
		be->next++;
		if (lmtp_backend_next_accepted(be) == SIZE_MAX)
			lmtp_backend_quit(be);
		return;
	}
	case LMTP_BE_QUIT:
		lmtp_backend_done(be);
		return;
	case LMTP_BE_BODY:
		/* a reply before the message ended: the backend gave up */
		break;
	case LMTP_BE_CONNECTING:
	case LMTP_BE_DONE:
		return;
	}
	char safe[LMTP_REPLY_MAX];
	str_sanitize(str_cstr(be->reply), safe, sizeof(safe));
	str_printf(reason, sizeof(reason), "unexpected reply in step %d: %s",
		   (int)be->step, safe);
	lmtp_backend_fail(be, reason);
}

/* One reply line (without its line end). Returns 1 when the reply is
 * complete (*code_r set), 0 when more lines follow, -1 when malformed. */
static int lmtp_backend_reply_line(struct lmtp_backend *be, struct str line,
				   unsigned int *code_r)
{
	if (line.len < 3 || line.p[0] < '1' || line.p[0] > '5' ||
	    line.p[1] < '0' || line.p[1] > '9' || line.p[2] < '0' ||
	    line.p[2] > '9' || (line.len > 3 && line.p[3] != ' ' && line.p[3] != '-'))
		return -1;
	bool more = line.len > 3 && line.p[3] == '-';
	if (line.len > LMTP_REPLY_MAX - 1)
		line.len = LMTP_REPLY_MAX - 1;
	/* keep every line while they fit, else only the last one */
	size_t need = line.len + (be->reply_len > 0 ? 2 : 0);
	if (be->reply_len + need > LMTP_REPLY_MAX - 1)
		be->reply_len = 0;
	if (be->reply_len > 0) {
		be->reply[be->reply_len++] = '\r';
		be->reply[be->reply_len++] = '\n';
	}
	for (size_t i = 0; i < line.len; i++) {
		unsigned char ch = (unsigned char)line.p[i];
		/* no control bytes towards the client */
		be->reply[be->reply_len++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
	}
	be->reply[be->reply_len] = '\0';
	if (more)
		return 0;
	*code_r = (unsigned int)((line.p[0] - '0') * 100 + (line.p[1] - '0') * 10 +
				 (line.p[2] - '0'));
	return 1;
}

static void lmtp_backend_lines(struct lmtp_backend *be)
{
	while (be->step != LMTP_BE_DONE && be->input->len > 0) {
		struct str all = buf_str(be->input);
		ptrdiff_t lf = str_index(all, '\n');
		if (lf < 0) {
			if (buf_room(be->input) == 0)
				lmtp_backend_fail(be, "backend sent an over-long line");
			return;
		}
		size_t len = (size_t)lf;
		if (len > 0 && all.p[len - 1] == '\r')
			len--;
		unsigned int code = 0;
		int ret = lmtp_backend_reply_line(be, str_from(all.p, len), &code);
		buf_consume(be->input, (size_t)lf + 1);
		if (ret < 0) {
			lmtp_backend_fail(be, "malformed reply");
			return;
		}
		if (ret == 0)
			continue;
		lmtp_backend_reply(be, code);
		be->reply_len = 0;
		be->reply[0] = '\0';
	}
}

static void lmtp_backend_read(struct lmtp_backend *be)
{
	struct client *c = be_client(be);

	while (be->step != LMTP_BE_DONE) {
		uint8_t tmp[4096];
		size_t room = buf_room(be->input);
		if (room == 0) {
			lmtp_backend_fail(be, "backend sent an over-long line");
			return;
		}
		ssize_t n = conn_read(be->conn, tmp, room < sizeof(tmp) ? room : sizeof(tmp));
		if (n == CONN_AGAIN)
			return;
		if (n == CONN_EOF || n == CONN_FAILED) {
			char reason[200];
			str_printf(reason, sizeof(reason), "backend closed the connection%s%s",
				   n == CONN_FAILED ? ": " : "",
				   n == CONN_FAILED ? conn_error(be->conn) : "");
			lmtp_backend_fail(be, reason);
			return;
		}
		buf_append(be->input, tmp, (size_t)n);
		net_timer_start(be->timer,
				(unsigned int)c->cfg->set.lmtp_timeout_msecs, false);
		lmtp_backend_lines(be);
	}
}

static void lmtp_backend_connected(struct lmtp_backend *be)
{
	struct client *c = be_client(be);
	int res = net_connect_result(conn_fd(be->conn));

	if (res == 0)
		return;
	if (res < 0) {
		char reason[200], addr[NET_ADDR_STR_MAX];
		str_printf(reason, sizeof(reason), "connect(%s) failed: %s",
			   net_addr_str(&be->addr, addr, sizeof(addr)),
			   strerror(errno));
		lmtp_backend_fail(be, reason);
		return;
	}
	be->step = LMTP_BE_GREETING;
	net_set_nodelay(conn_fd(be->conn), true);
	net_timer_start(be->timer, (unsigned int)c->cfg->set.lmtp_timeout_msecs,
			false);
	conn_want(be->conn, true, false);
}

static void lmtp_backend_event(struct conn *conn, enum conn_event ev,
			       void *context)
{
	struct lmtp_backend *be = context;
	(void)conn;

	switch (ev) {
	case CONN_EV_WRITABLE:
		if (be->step == LMTP_BE_CONNECTING)
			lmtp_backend_connected(be);
		else
			lmtp_backend_flush(be);
		return;
	case CONN_EV_READABLE:
		lmtp_backend_read(be);
		return;
	case CONN_EV_TLS_READY:
	case CONN_EV_ERROR:
		lmtp_backend_fail(be, "unexpected TLS event");
		return;
	}
}

static void lmtp_backend_timeout(void *context)
{
	struct lmtp_backend *be = context;

	lmtp_backend_fail(be, be->step == LMTP_BE_CONNECTING ?
			  "connect timed out" : "backend timed out");
}

static const struct net_addr *lmtp_source_ip(const struct client *c)
{
	const struct proxy_config *cfg = c->cfg;
	if (cfg->source_ip_count == 0)
		return NULL;
	unsigned int i = atomic_fetch_add(&proxy.source_ip_next, 1);
	return &cfg->source_ips[i % cfg->source_ip_count];
}

static void lmtp_backend_start(struct lmtp_backend *be)
{
	struct client *c = be_client(be);
	const struct proxy_backend *pb = &c->cfg->backends[be->backend];
	char err[NET_ERROR_MAX];

	be->addr = pb->addr;
	net_addr_set_port(&be->addr, (uint16_t)pb->set->lmtp_port);
	be->timer = net_timer_new(c->worker->base, lmtp_backend_timeout, be);
	be->input = buf_new(1024, LMTP_BACKEND_LINE_MAX);
	be->output = buf_new(1024, LMTP_BACKEND_OUTPUT_MAX);
	be->step = LMTP_BE_CONNECTING;
	if (pb->unresolved) {
		/* routed before the name lost its address (lmtp_route skips
		 * unresolved backends) */
		char reason[160];
		str_printf(reason, sizeof(reason), "backend %s: its host name is "
			   "not resolved yet", pb->set->name);
		lmtp_backend_fail(be, reason);
		return;
	}
	int fd = net_connect(&be->addr, lmtp_source_ip(c), err, sizeof(err));
	if (fd < 0) {
		lmtp_backend_fail(be, err);
		return;
	}
	be->conn = conn_new(c->worker->base, fd, lmtp_backend_event, be);
	conn_want(be->conn, false, true);
	net_timer_start(be->timer,
			(unsigned int)c->cfg->set.backend_connect_timeout_msecs,
			false);
}

/* The message is in the spool: one connection per backend involved. */
static void lmtp_deliver(struct client *c)
{
	struct lmtp_session *s = c->proto_state;

	s->backends = xcalloc(s->rcpt_count, sizeof(*s->backends));
	s->backend_count = 0;
	for (size_t i = 0; i < s->rcpt_count; i++) {
		struct lmtp_backend *be = NULL;
		for (size_t j = 0; j < s->backend_count; j++) {
			if (s->backends[j].backend == s->rcpts[i].backend)
				be = &s->backends[j];
		}
		if (be == NULL) {
			be = &s->backends[s->backend_count++];
			be->s = s;
			be->backend = s->rcpts[i].backend;
			be->rcpts = xcalloc(s->rcpt_count, sizeof(*be->rcpts));
		}
		be->rcpts[be->rcpt_count++] = i;
	}
	s->backends_pending = s->backend_count;
	lmtp_set_state(c, LMTP_STATE_DELIVERING);
	/* each backend step has its own timeout; the client waits */
	net_timer_stop(c->timer);
	for (size_t i = 0; i < s->backend_count; i++)
		lmtp_backend_start(&s->backends[i]);
}

/* Every backend is done (deferred from their callbacks by finish_timer):
 * one reply per recipient, in RCPT order. */
static void lmtp_finish(void *context)
{
	struct client *c = context;
	struct lmtp_session *s = c->proto_state;

	if (lmtp_client_gone(c)) {
		lmtp_tx_reset(s);
		return;
	}
	for (size_t i = 0; i < s->rcpt_count && !c->destroyed; i++) {
		struct lmtp_rcpt *r = &s->rcpts[i];
		const char *reply = r->reply != NULL ? r->reply :
				    "451 4.3.0 Internal error";
		lmtp_log_rcpt(c, r->addr, r->user,
			      c->cfg->backends[r->backend].set->name,
			      reply[0] == '2' ? "delivered" :
			      reply[0] == '4' ? "deferred" : "rejected",
			      reply);
		client_send(c, reply, strlen(reply));
		client_send(c, "\r\n", 2);
	}
	if (c->destroyed)
		return;
	lmtp_tx_reset(s);
	lmtp_set_state(c, LMTP_STATE_READY);
	lmtp_arm_timeout(c);
	client_input_resume(c);
}

/* ---- recipients ---------------------------------------------------------- */

/* The backend for a looked-up recipient: host= pins it (by name or
 * address), otherwise the director's mapping or ranking. Returns the
 * index into c->cfg->backends, or -1 with *why_r set. */
static ptrdiff_t lmtp_route(struct client *c, const struct auth_result *res,
			    const char *key, const char **why_r)
{
	const struct proxy_config *cfg = c->cfg;

	if (res->host != NULL) {
		struct net_addr want;
		const char *error;
		bool want_ok = net_addr_parse(res->host, NET_ADDR_PORT_OPTIONAL,
					      &want, &error) == 0;
		for (size_t i = 0; i < cfg->backend_count; i++) {
			if (strcmp(cfg->backends[i].set->name, res->host) == 0 ||
			    (want_ok && !cfg->backends[i].unresolved &&
			     net_addr_ip_eq(&cfg->backends[i].addr, &want))) {
				if (cfg->backends[i].set->lmtp_port == 0) {
					*why_r = "host= names a backend without lmtp_port";
					return -1;
				}
				return (ptrdiff_t)i;
			}
		}
		*why_r = "host= from the passdb is not a configured backend";
		return -1;
	}
	char names[8][DIRECTOR_NAME_MAX];
	bool mapped = false;
	size_t n = directing_route(key, res->director_tag, names, 8, &mapped);
	*why_r = "no backend available for the user";
	for (size_t k = 0; k < n; k++) {
		for (size_t i = 0; i < cfg->backend_count; i++) {
			const struct backend_settings *bs = cfg->backends[i].set;
			if (strcmp(bs->name, names[k]) != 0 || bs->lmtp_port == 0)
				continue;
			if (!cfg->backends[i].unresolved)
				return (ptrdiff_t)i;
			/* a DNS name without an address yet: the next one */
			*why_r = "the backend's host name is not resolved yet";
			break;
		}
		if (mapped)
			break; /* I1: a mapped user has no fallback */
	}
	return -1;
}

static void lmtp_rcpt_add(struct client *c, char *addr,
			  const struct auth_result *res, bool ring_routed)
{
	struct lmtp_session *s = c->proto_state;
	struct str key = proxy_user_key(&c->cfg->set, res->user);
	char *dkey = xstrndup(key.p, key.len);
	const char *why = NULL;
	ptrdiff_t idx = lmtp_route(c, res, dkey, &why);

	if (idx >= 0 && res->host == NULL &&
	    !directing_session_begin(dkey, c->cfg->backends[idx].set->name,
				     ring_routed)) {
		why = "the user was mapped elsewhere meanwhile";
		idx = -1;
	}
	if (idx < 0) {
		char reply[LMTP_ADDR_SHOW_MAX + 64];
		str_printf(reply, sizeof(reply), "451 4.4.0 <%.*s> Backend unavailable",
			   ADDR_FMT(addr));
		lmtp_log_rcpt(c, addr, res->user, NULL, "deferred", why);
		lmtp_reply(c, "%s", reply);
		free(dkey);
		free(addr);
		return;
	}
	if (s->rcpt_count == s->rcpt_alloc) {
		s->rcpt_alloc = s->rcpt_alloc == 0 ? 4 : s->rcpt_alloc * 2;
		s->rcpts = xreallocarray(s->rcpts, s->rcpt_alloc, sizeof(*s->rcpts));
	}
	struct lmtp_rcpt *r = &s->rcpts[s->rcpt_count++];
	memset(r, 0, sizeof(*r));
	r->addr = addr;
	r->user = xstrdup(res->user);
	r->backend = (size_t)idx;
	if (res->host == NULL)
		r->director_key = dkey;
	else
		free(dkey);
	lmtp_reply(c, "250 2.1.5 OK");
}

static void lmtp_rcpt_resume(struct client *c)
{
	if (lmtp_client_gone(c))
		return;
	lmtp_set_state(c, LMTP_STATE_MAIL);
	client_input_resume(c);
}

static void lmtp_ring_done(enum directing_lookup_result result, void *context)
{
	struct client *c = context;
	struct lmtp_session *s = c->proto_state;
	char *addr = s->pending_addr;
	char *user = s->pending_user;
	char *tag = s->pending_tag;

	s->ring_lookup = NULL;
	s->pending_addr = NULL;
	s->pending_user = NULL;
	s->pending_tag = NULL;
	if (lmtp_client_gone(c)) {
		free(addr);
	} else if (result == DIRECTING_LOOKUP_OK ||
		   result == DIRECTING_LOOKUP_DEGRADED) {
		struct auth_result res = { .code = AUTH_RESULT_OK, .user = user,
					   .director_tag = tag };
		lmtp_rcpt_add(c, addr, &res, result == DIRECTING_LOOKUP_OK);
	} else {
		lmtp_log_rcpt(c, addr, user, NULL, "deferred",
			      result == DIRECTING_LOOKUP_NONE ?
			      "no backend available for the user" :
			      "the user is being moved");
		lmtp_reply(c, "451 4.4.0 <%.*s> Backend unavailable", ADDR_FMT(addr));
		free(addr);
	}
	free(user);
	free(tag);
	lmtp_rcpt_resume(c);
}

static void lmtp_lookup_done(const struct auth_result *res, void *context)
{
	struct client *c = context;
	struct lmtp_session *s = c->proto_state;
	char *addr = s->pending_addr;

	s->auth_req = NULL;
	s->pending_addr = NULL;
	if (lmtp_client_gone(c)) {
		free(addr);
		return;
	}
	switch (res->code) {
	case AUTH_RESULT_OK:
	case AUTH_RESULT_NOLOGIN: /* nologin stops logins, not mail */
		if (res->host == NULL && res->user != NULL) {
			/* a shared store is asked first (I1 holds for
			 * deliveries too: they write the mailbox) */
			struct str key = proxy_user_key(&c->cfg->set, res->user);
			char *dkey = xstrndup(key.p, key.len);
			s->ring_lookup = directing_lookup(c->worker->base, dkey,
							  res->director_tag,
							  lmtp_ring_done, c);
			free(dkey);
			if (s->ring_lookup != NULL) {
				s->pending_addr = addr;
				s->pending_user = xstrdup(res->user);
				s->pending_tag = res->director_tag != NULL ?
						 xstrdup(res->director_tag) : NULL;
				return; /* input stays paused */
			}
		}
		lmtp_rcpt_add(c, addr, res, false);
		addr = NULL;
		break;
	case AUTH_RESULT_UNKNOWN_USER:
	case AUTH_RESULT_FAILED:
		lmtp_log_rcpt(c, addr, NULL, NULL, "unknown-user",
			      res->log_reason);
		/* Dovecot's words */
		lmtp_reply(c, "550 5.1.1 <%.*s> User doesn't exist: %.*s",
			   ADDR_FMT(addr), ADDR_FMT(addr));
		break;
	case AUTH_RESULT_TEMPFAIL:
	default:
		lmtp_log_rcpt(c, addr, NULL, NULL, "tempfail", res->log_reason);
		lmtp_reply(c, "451 4.3.0 <%.*s> Temporary user lookup failure",
			   ADDR_FMT(addr));
		break;
	}
	free(addr);
	lmtp_rcpt_resume(c);
}

/* ---- commands -------------------------------------------------------------- */

static void lmtp_cmd_lhlo(struct client *c, const struct smtp_command *cmd)
{
	struct lmtp_session *s = c->proto_state;
	(void)cmd;

	lmtp_tx_reset(s);
	lmtp_reply(c, "250-%s\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n"
		   "250-PIPELINING\r\n250 SIZE %llu", s->hostname,
		   (unsigned long long)c->cfg->set.lmtp_max_message_size);
	if (!c->destroyed)
		lmtp_set_state(c, LMTP_STATE_READY);
}

static void lmtp_cmd_mail(struct client *c, const struct smtp_command *cmd)
{
	struct lmtp_session *s = c->proto_state;
	struct str body = STR_NULL;

	for (size_t i = 0; i < cmd->param_count; i++) {
		const struct smtp_param *p = &cmd->params[i];
		if (str_eq_nocase(p->keyword, STR("SIZE"))) {
			uint64_t size;
			if (!p->has_value || !str_to_u64(p->value, UINT64_MAX, &size)) {
				lmtp_reply(c, "501 5.5.4 Invalid SIZE parameter");
				return;
			}
			if (size > c->cfg->set.lmtp_max_message_size) {
				lmtp_reply(c, "552 5.3.4 Message size exceeds fixed maximum message size");
				return;
			}
		} else if (str_eq_nocase(p->keyword, STR("BODY"))) {
			if (!p->has_value ||
			    (!str_eq_nocase(p->value, STR("7BIT")) &&
			     !str_eq_nocase(p->value, STR("8BITMIME")))) {
				lmtp_reply(c, "501 5.5.4 Invalid BODY parameter");
				return;
			}
			body = p->value;
		} else {
			lmtp_reply(c, "555 5.5.4 Unsupported parameter");
			return;
		}
	}
	lmtp_tx_reset(s);
	/* a new transaction routes with the newest configuration */
	proxy_config_unref(&c->cfg);
	c->cfg = proxy_config_ref();
	c->listener = &c->cfg->set.listeners[c->listener_idx];
	s->from_addr = cmd->path.null ? xstrdup("") :
		       xstrndup(cmd->path.raw.p, cmd->path.raw.len);
	if (body.len > 0)
		s->mail_from = lmtp_strfmt("<%s> BODY=%.*s", s->from_addr,
					   STR_FMT(body));
	else
		s->mail_from = lmtp_strfmt("<%s>", s->from_addr);
	lmtp_reply(c, "250 2.1.0 OK");
	if (!c->destroyed)
		lmtp_set_state(c, LMTP_STATE_MAIL);
}

static void lmtp_cmd_rcpt(struct client *c, const struct smtp_command *cmd)
{
	struct lmtp_session *s = c->proto_state;
	const struct smtp_path *path = &cmd->path;
	char ip[NET_ADDR_STR_MAX];

	if (cmd->param_count > 0) {
		lmtp_reply(c, "555 5.5.4 Unsupported parameter");
		return;
	}
	if (s->rcpt_count >= c->cfg->set.lmtp_max_recipients) {
		lmtp_reply(c, "452 4.5.3 Too many recipients");
		return;
	}
	/* the passdb's name for the recipient: local part, @domain if any */
	char *name = path->domain.len > 0 ?
		     lmtp_strfmt("%.*s@%.*s", STR_FMT(path->local),
				 STR_FMT(path->domain)) :
		     xstrndup(path->local.p, path->local.len);
	struct auth_request_params params = {
		.user = str_cstr(name),
		.authzid = STR_NULL,
		.password = STR_NULL,
		.service = "lmtp",
		.client_ip = net_addr_ip_str(&c->rip, ip, sizeof(ip)),
		.session_id = c->session_id,
		.flags = AUTH_REQUEST_FLAG_LOOKUP_ONLY,
	};
	s->pending_addr = xstrndup(path->raw.p, path->raw.len);
	lmtp_set_state(c, LMTP_STATE_RCPT_LOOKUP);
	s->auth_req = auth_request_new(proxy.auth, c->worker->base, &params,
				       lmtp_lookup_done, c);
	free(name);
}

static void lmtp_cmd_data(struct client *c, const struct smtp_command *cmd)
{
	struct lmtp_session *s = c->proto_state;
	uint64_t max = c->cfg->set.lmtp_max_message_size;
	(void)cmd;

	if (s->rcpt_count == 0) {
		lmtp_reply(c, "554 5.5.1 No valid recipients");
		return;
	}
	s->decoder = smtp_data_decoder_new(max);
	s->spool = buf_new(max < LMTP_SPOOL_INITIAL ? (size_t)max : LMTP_SPOOL_INITIAL,
			   (size_t)max);
	lmtp_reply(c, "354 OK");
	if (!c->destroyed)
		lmtp_set_state(c, LMTP_STATE_DATA);
}

static void lmtp_cmd_rset(struct client *c, const struct smtp_command *cmd)
{
	struct lmtp_session *s = c->proto_state;
	(void)cmd;

	lmtp_tx_reset(s);
	if (s->state == LMTP_STATE_MAIL)
		lmtp_set_state(c, LMTP_STATE_READY);
	lmtp_reply(c, "250 2.0.0 OK");
}

static void lmtp_cmd_noop(struct client *c, const struct smtp_command *cmd)
{
	(void)cmd;
	lmtp_reply(c, "250 2.0.0 OK");
}

static void lmtp_cmd_vrfy(struct client *c, const struct smtp_command *cmd)
{
	(void)cmd;
	lmtp_reply(c, "252 2.3.3 Try RCPT instead");
}

static void lmtp_cmd_quit(struct client *c, const struct smtp_command *cmd)
{
	(void)cmd;
	lmtp_reply(c, "221 2.0.0 Bye");
	if (!c->destroyed)
		client_close_after_output(c, "Disconnected: Logged out");
}

static void lmtp_cmd_helo(struct client *c, const struct smtp_command *cmd)
{
	(void)cmd;
	lmtp_reply(c, "500 5.5.1 This is LMTP: use LHLO");
	lmtp_count_bad(c);
}

static void lmtp_cmd_unsupported(struct client *c, const struct smtp_command *cmd)
{
	(void)cmd;
	lmtp_reply(c, "502 5.5.1 Command not implemented");
	lmtp_count_bad(c);
}

#define ST(x) (1u << (x))
#define ST_ANY (ST(LMTP_STATE_INIT) | ST(LMTP_STATE_READY) | ST(LMTP_STATE_MAIL))

struct lmtp_command {
	enum smtp_verb verb;
	unsigned int states;  /* where it may run: ST() bits */
	const char *refusal;  /* the reply elsewhere */
	void (*run)(struct client *c, const struct smtp_command *cmd);
};

static const struct lmtp_command lmtp_commands[] = {
	{ SMTP_VERB_LHLO, ST_ANY, NULL, lmtp_cmd_lhlo },
	{ SMTP_VERB_MAIL, ST(LMTP_STATE_READY),
	  "503 5.5.1 Bad sequence of commands (LHLO first, one MAIL per transaction)",
	  lmtp_cmd_mail },
	{ SMTP_VERB_RCPT, ST(LMTP_STATE_MAIL), "503 5.5.1 MAIL needed first",
	  lmtp_cmd_rcpt },
	{ SMTP_VERB_DATA, ST(LMTP_STATE_MAIL), "503 5.5.1 MAIL needed first",
	  lmtp_cmd_data },
	{ SMTP_VERB_RSET, ST_ANY, NULL, lmtp_cmd_rset },
	{ SMTP_VERB_NOOP, ST_ANY, NULL, lmtp_cmd_noop },
	{ SMTP_VERB_VRFY, ST_ANY, NULL, lmtp_cmd_vrfy },
	{ SMTP_VERB_QUIT, ST_ANY, NULL, lmtp_cmd_quit },
	{ SMTP_VERB_HELO, ST_ANY, NULL, lmtp_cmd_helo },
	{ SMTP_VERB_EHLO, ST_ANY, NULL, lmtp_cmd_helo },
	{ SMTP_VERB_BDAT, ST_ANY, NULL, lmtp_cmd_unsupported },
	{ SMTP_VERB_HELP, ST_ANY, NULL, lmtp_cmd_unsupported },
	{ SMTP_VERB_STARTTLS, ST_ANY, NULL, lmtp_cmd_unsupported },
	{ SMTP_VERB_AUTH, ST_ANY, NULL, lmtp_cmd_unsupported },
	{ SMTP_VERB_XCLIENT, ST_ANY, NULL, lmtp_cmd_unsupported },
};

static void lmtp_command(struct client *c, const struct smtp_command *cmd)
{
	struct lmtp_session *s = c->proto_state;

	for (size_t i = 0; i < sizeof(lmtp_commands) / sizeof(lmtp_commands[0]); i++) {
		const struct lmtp_command *lc = &lmtp_commands[i];
		if (lc->verb != cmd->verb)
			continue;
		if ((lc->states & ST(s->state)) == 0) {
			lmtp_reply(c, "%s", lc->refusal);
			lmtp_count_bad(c);
			return;
		}
		lc->run(c, cmd);
		return;
	}
	lmtp_reply(c, "500 5.5.2 Unknown command");
	lmtp_count_bad(c);
}

static void lmtp_parse_error(struct client *c, const struct smtp_parse_error *err)
{
	switch (err->kind) {
	case SMTP_PARSE_ERR_TOO_LONG:
		lmtp_reply(c, "500 5.5.2 Line too long");
		break;
	case SMTP_PARSE_ERR_BAD_PATH:
		lmtp_reply(c, "501 %s Invalid address: %s",
			   err->verb == SMTP_VERB_MAIL ? "5.1.7" : "5.1.3",
			   err->msg);
		break;
	case SMTP_PARSE_ERR_BAD_SYNTAX:
	case SMTP_PARSE_ERR_BAD_PARAM:
	case SMTP_PARSE_ERR_TOO_MANY_PARAMS:
		lmtp_reply(c, "501 5.5.4 %s", err->msg);
		break;
	case SMTP_PARSE_ERR_NONE:
	case SMTP_PARSE_ERR_NUL:
	case SMTP_PARSE_ERR_EMPTY:
	case SMTP_PARSE_ERR_BAD_VERB:
	default:
		lmtp_reply(c, "500 5.5.2 %s", err->msg);
		break;
	}
	lmtp_count_bad(c);
}

/* ---- DATA -------------------------------------------------------------------- */

static void lmtp_data_end(struct client *c, bool too_big)
{
	struct lmtp_session *s = c->proto_state;

	if (!too_big) {
		lmtp_deliver(c);
		return;
	}
	/* one reply per recipient, as after any DATA */
	for (size_t i = 0; i < s->rcpt_count && !c->destroyed; i++) {
		const struct lmtp_rcpt *r = &s->rcpts[i];
		lmtp_log_rcpt(c, r->addr, r->user, NULL, "rejected",
			      "message too big");
		lmtp_reply(c, "552 5.3.4 <%.*s> Message too big for system",
			   ADDR_FMT(r->addr));
	}
	if (c->destroyed)
		return;
	lmtp_tx_reset(s);
	lmtp_set_state(c, LMTP_STATE_READY);
}

/* Decodes what the client sent into the spool, up to the end of data. */
static void lmtp_data_input(struct client *c)
{
	struct lmtp_session *s = c->proto_state;
	uint8_t out[8192];

	while (c->input->len > 0) {
		size_t consumed = 0, produced = 0;
		enum smtp_data_result r =
			smtp_data_decode(s->decoder, c->input->data, c->input->len,
					 &consumed, out, sizeof(out), &produced);
		/* the decoder stops producing at the limit, which is the
		 * spool's: an append cannot fail */
		if (produced > 0 && buf_append(s->spool, out, produced) < 0)
			fatalx("lmtp: spool over its limit");
		client_input_consume(c, consumed);
		smtp_parser_advance(s->parser, consumed);
		if (r != SMTP_DATA_MORE) {
			lmtp_data_end(c, r == SMTP_DATA_TOO_BIG);
			return;
		}
	}
}

/* ---- the protocol ------------------------------------------------------------ */

static void lmtp_input(struct client *c)
{
	struct lmtp_session *s = c->proto_state;

	if (s->parser == NULL)
		return; /* refused at the greeting */
	lmtp_arm_timeout(c);
	while (!c->destroyed && c->state == CLIENT_STATE_PRELOGIN &&
	       c->input->len > 0) {
		if (s->state == LMTP_STATE_DATA) {
			lmtp_data_input(c);
			continue;
		}
		size_t consumed = 0;
		struct smtp_command cmd;
		struct smtp_parse_error err;
		enum smtp_parse_result r =
			smtp_parser_parse(s->parser, c->input->data, c->input->len,
					  &consumed, &cmd, &err);
		/* the command's slices live in the parser, not in the input */
		client_input_consume(c, consumed);
		if (r == SMTP_PARSE_MORE)
			break;
		if (r == SMTP_PARSE_ERROR) {
			lmtp_parse_error(c, &err);
			continue;
		}
		lmtp_command(c, &cmd);
	}
}

static void lmtp_greet(struct client *c)
{
	struct lmtp_session *s = c->proto_state;

	s->client = c;
	if (gethostname(s->hostname, sizeof(s->hostname)) == -1 ||
	    s->hostname[0] == '\0' || strpbrk(s->hostname, " \r\n") != NULL)
		str_printf(s->hostname, sizeof(s->hostname), "mailring");
	s->hostname[sizeof(s->hostname) - 1] = '\0';
	if (!c->trusted) {
		/* LMTP is for MTAs, which are configured, not anyone */
		struct log_ctx ctx;
		client_log_ctx(c, &ctx);
		log_emit(LOG_LEVEL_WARNING, &ctx, &lmtp_log_rl,
			 "lmtp: client not in login_trusted_networks: refused");
		lmtp_reply(c, "554 5.7.1 Access denied");
		if (!c->destroyed)
			client_close_after_output(c, "Disconnected: LMTP client not trusted");
		return;
	}
	struct smtp_parser_limits limits = {
		.max_line_len = (size_t)c->cfg->set.max_line_length,
		.max_params = LMTP_MAX_PARAMS,
	};
	s->parser = smtp_parser_new(&limits);
	s->finish_timer = net_timer_new(c->worker->base, lmtp_finish, c);
	lmtp_reply(c, "220 %s mailring LMTP ready", s->hostname);
	if (!c->destroyed)
		lmtp_arm_timeout(c);
}

static void lmtp_bye_line(struct client *c, const char *reason, struct buf *out)
{
	(void)c;
	if (strncmp(reason, "Disconnected for inactivity",
		    strlen("Disconnected for inactivity")) == 0)
		buf_printf(out, "421 4.4.2 Disconnected for inactivity\r\n");
	else
		buf_printf(out, "421 4.3.2 %s\r\n", reason);
}

static void lmtp_free(struct client *c)
{
	struct lmtp_session *s = c->proto_state;

	if (s == NULL)
		return;
	auth_request_cancel(&s->auth_req);
	directing_lookup_cancel(&s->ring_lookup);
	xfree(&s->pending_addr);
	xfree(&s->pending_user);
	xfree(&s->pending_tag);
	lmtp_tx_reset(s);
	smtp_parser_free(&s->parser);
	net_timer_free(&s->finish_timer);
}

/* LMTP never logs in: the login half of the vtable is never called. */
static void lmtp_login_failed(struct client *c, enum auth_result_code code,
			      const char *resp_code, const char *text)
{
	(void)code;
	(void)resp_code;
	(void)text;
	client_destroy(c, "Disconnected: internal error (LMTP login)");
}

static void lmtp_login_succeeded(struct client *c, struct backend_login *bl)
{
	(void)bl;
	client_destroy(c, "Disconnected: internal error (LMTP login)");
}

static void lmtp_backend_unused(struct backend_login *bl)
{
	backend_login_fail(bl, NULL, "internal error", "LMTP has no backend login");
}

static void lmtp_backend_line_unused(struct backend_login *bl, struct str line)
{
	(void)line;
	lmtp_backend_unused(bl);
}

const struct client_protocol lmtp_protocol = {
	.name = "lmtp",
	.state_size = sizeof(struct lmtp_session),
	.greet = lmtp_greet,
	.input = lmtp_input,
	.login_failed = lmtp_login_failed,
	.login_succeeded = lmtp_login_succeeded,
	.bye_line = lmtp_bye_line,
	.backend_start = lmtp_backend_unused,
	.backend_line = lmtp_backend_line_unused,
	.backend_tls_ready = lmtp_backend_unused,
	.free = lmtp_free,
};
