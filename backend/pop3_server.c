/*
 * POP3 server of the mail node. Texts follow Dovecot 2.3's pop3 process so
 * that clients and admins see the familiar.
 *
 * Session flow: greeting -> AUTHORIZATION (CAPA, USER/PASS, AUTH PLAIN,
 * QUIT) -> the auth library answers on this thread -> the INBOX is
 * scanned (new/ moved to cur/) and the UID list synced under its lock ->
 * TRANSACTION (STAT LIST UIDL RETR TOP DELE RSET NOOP QUIT) -> at QUIT the
 * messages marked with DELE are unlinked and the UID list synced again.
 * A session that ends without QUIT deletes nothing (RFC 1939 section 6).
 *
 * Sizes: LIST, STAT and "+OK n octets" count the message as sent, with
 * every bare LF of the file sent as CRLF (dot-stuffing not counted, as
 * RFC 1939 says). The ",W=" size in a file name is trusted when present
 * (Dovecot writes it); otherwise the file is read once in bounded chunks.
 *
 * Output: replies go into a bounded buffer; RETR, TOP, LIST and UIDL
 * produce their bodies in pieces, each only once the previous piece was
 * written, so a slow client holds at most one piece in memory. Input is
 * not read while a reply is streaming (pipelined commands wait).
 *
 * Disk I/O (scan, UID list, reading a message) runs on the worker thread:
 * a slow disk delays the other sessions of that worker (known limit of
 * this slice).
 */
#include "pop3_server.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "auth/auth.h"
#include "base64.h"
#include "buf.h"
#include "conn.h"
#include "log.h"
#include "io_pool.h"
#include "login.h"
#include "mailbox.h"
#include "maildir.h"
#include "owner.h"
#include "pop3_parse.h"
#include "str.h"
#include "tls.h"
#include "xmalloc.h"

#define POP3_GREETING "+OK mailring-backend ready.\r\n"
#define POP3_CAPA_HEAD                                                         \
	"+OK\r\n"                                                              \
	"CAPA\r\n"
#define POP3_CAPA_TAIL                                                         \
	"TOP\r\n"                                                              \
	"UIDL\r\n"                                                             \
	"RESP-CODES\r\n"                                                       \
	"PIPELINING\r\n"                                                       \
	"AUTH-RESP-CODE\r\n"                                                   \
	"USER\r\n"                                                             \
	"SASL PLAIN\r\n"                                                       \
	".\r\n"

#define IN_BUF_SIZE 4096
#define OUT_MAX (64 * 1024)
#define RETR_CHUNK 8192       /* file bytes per piece (at most 2x sent) */
#define LIST_CHUNK 16384      /* LIST/UIDL output bytes per piece */

/* ---- settings generations ---------------------------------------------- */

struct node_config {
	struct node_settings set;
	atomic_uint refs;
};

static pthread_mutex_t config_lock = PTHREAD_MUTEX_INITIALIZER;
static struct node_config *config_current;
static struct auth *server_auth;
static struct tls_server *server_tls;
static struct auth *master_auth;
static struct io_pool *server_io;

void pop3_server_set_io_pool(struct io_pool *pool)
{
	server_io = pool;
}

void pop3_server_set_tls(struct tls_server *tls)
{
	server_tls = tls;
}

void pop3_server_set_master_auth(struct auth *auth)
{
	master_auth = auth;
}

static struct node_config *config_ref(void)
{
	pthread_mutex_lock(&config_lock);
	struct node_config *c = config_current;
	atomic_fetch_add(&c->refs, 1);
	pthread_mutex_unlock(&config_lock);
	return c;
}

static void config_unref(struct node_config **c)
{
	if (*c == NULL)
		return;
	if (atomic_fetch_sub(&(*c)->refs, 1) == 1) {
		config_free(&node_settings_schema, &(*c)->set);
		free(*c);
	}
	*c = NULL;
}

void pop3_server_config_install(struct node_settings *set)
{
	struct node_config *c = xcalloc(1, sizeof(*c)), *old;
	c->set = *set;
	memset(set, 0, sizeof(*set));
	atomic_init(&c->refs, 1);
	pthread_mutex_lock(&config_lock);
	old = config_current;
	config_current = c;
	pthread_mutex_unlock(&config_lock);
	config_unref(&old);
}

void pop3_server_init(struct auth *auth, struct node_settings *set)
{
	server_auth = auth;
	pop3_server_config_install(set);
}

void pop3_server_deinit(void)
{
	pthread_mutex_lock(&config_lock);
	struct node_config *old = config_current;
	config_current = NULL;
	pthread_mutex_unlock(&config_lock);
	config_unref(&old);
}

const struct node_settings *pop3_server_settings(void)
{
	return &config_current->set;
}

/* Sessions per user and IP (mail_max_userip_connections). */
static struct userip_table pop3_userip = USERIP_TABLE_INIT;

/* ---- session ------------------------------------------------------------- */

enum pop3_state {
	POP3_STATE_AUTH = 0,    /* AUTHORIZATION: before login */
	POP3_STATE_AUTH_SASL,   /* AUTH PLAIN sent "+ ", waiting a response */
	POP3_STATE_AUTHING,     /* the auth library or its delay is pending */
	POP3_STATE_TRANSACTION, /* logged in, the maildir is open */
	POP3_STATE_CLOSING,     /* closed, to be freed from the free timer */
};
static const char *const pop3_state_names[] = {
	"auth", "auth-sasl", "authing", "transaction", "closing",
};

enum pop3_stream {
	POP3_STREAM_NONE = 0, /* no multi-line body is being sent */
	POP3_STREAM_MSG,      /* RETR or TOP: from s->fd */
	POP3_STREAM_LIST,     /* LIST without argument */
	POP3_STREAM_UIDL,     /* UIDL without argument */
};

struct pop3_msg {
	char *name;     /* file name in cur/ */
	uint32_t uid;
	uint64_t vsize; /* octets as sent (CRLF) */
	bool deleted;   /* DELE'd in this session */
};

struct pop3_worker {
	struct net_worker *worker;
	struct pop3_session *sessions; /* doubly linked */
	unsigned int count;
	bool draining;
};

struct pop3_session {
	struct pop3_session *prev, *next;
	struct pop3_worker *pw;
	struct node_config *cfg;
	struct conn *conn;
	struct pop3_parser *parser;
	enum pop3_state state;
	struct log_ctx log;
	char session_id[LOG_SESSION_ID_LEN + 1];
	char ip[NET_ADDR_STR_MAX];
	unsigned int bad_commands;

	uint8_t in[IN_BUF_SIZE];
	size_t in_pos, in_len;
	struct buf *out;
	const char *close_reason; /* close once out is written */

	bool starttls_pending; /* STLS: handshake once +OK is written */
	/* Disk work on the I/O pool (io_pool.h), as IMAP's: while busy the
	 * loop leaves the session alone. */
	unsigned int busy; /* enum pop3_busy */
	struct pop3_command busy_cmd;
	_Atomic bool job_running;
	const char *pending_close;
	bool login_ok;
	bool trusted;          /* login_trusted_networks: a proxy */
	char *master_user;     /* master login: the master */
	char *master_target;   /* ... and the user it logs in as */
	bool greeted;
	struct buf *last_user; /* USER's argument until PASS */
	char *user;            /* canonical user after login */
	char *userip_key;      /* counted in userip_list */
	struct owner_ref *owner; /* shared-storage guard (owner.h) */
	struct auth_request *auth_req;
	struct net_timer *idle_timer;
	struct net_timer *delay_timer; /* failed login answer delay */
	struct net_timer *free_timer;
	char delayed_reply[192];

	char dir[MAILDIR_PATH_MAX]; /* the INBOX Maildir */
	struct pop3_msg *msgs;
	size_t msg_count;
	uint32_t uidvalidity;

	enum pop3_stream stream;
	size_t list_next; /* LIST/UIDL: next message index */
	int fd;           /* RETR/TOP file */
	bool top;         /* TOP: stop after top_lines body lines */
	uint64_t top_lines, body_lines;
	bool in_body, at_line_start, prev_cr;
	size_t line_len; /* bytes of the current header line */
	uint64_t retr_count, retr_bytes, top_count, dele_count;
};

static void session_pump(struct pop3_session *s);

/* A trusted proxy learns it may send XCLIENT from the greeting, as with
 * Dovecot. */
static void greet(struct pop3_session *s)
{
	s->greeted = true;
	buf_append_cstr(s->out, s->trusted
				    ? "+OK [XCLIENT] mailring-backend ready.\r\n"
				    : POP3_GREETING);
}

static void session_set_state(struct pop3_session *s, enum pop3_state st)
{
	log_ctx_debug(&s->log, "pop3: state %s -> %s",
		      pop3_state_names[s->state], pop3_state_names[st]);
	s->state = st;
}

static void reply(struct pop3_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void reply(struct pop3_session *s, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2)
		n = str_printf(line, sizeof(line) - 2, "-ERR Reply too long.");
	memcpy(line + n, "\r\n", 2);
	if (buf_append(s->out, line, (size_t)n + 2) < 0)
		s->close_reason = "output buffer full";
}

static void msgs_free(struct pop3_session *s)
{
	for (size_t i = 0; i < s->msg_count; i++)
		free(s->msgs[i].name);
	free(s->msgs);
	s->msgs = NULL;
	s->msg_count = 0;
}

static void session_free_cb(void *context)
{
	struct pop3_session *s = context;
	struct pop3_worker *pw = s->pw;

	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		pw->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	pw->count--;
	net_timer_free(&s->idle_timer);
	net_timer_free(&s->delay_timer);
	net_timer_free(&s->free_timer);
	conn_free(&s->conn);
	pop3_parser_free(&s->parser);
	buf_free(&s->out);
	buf_free(&s->last_user);
	if (s->fd >= 0)
		close(s->fd);
	msgs_free(s);
	owner_release(&s->owner);
	if (s->userip_key != NULL)
		userip_release(&pop3_userip, s->userip_key);
	free(s->userip_key);
	free(s->user);
	free(s->master_user);
	free(s->master_target);
	config_unref(&s->cfg);
	free(s);
	if (pw->draining && pw->count == 0)
		net_worker_drained(pw->worker);
}

/* Ends the session (logged with reason); the memory goes from a timer,
 * never inside a callback of the session. */
static void session_close(struct pop3_session *s, const char *reason)
{
	if (s->state == POP3_STATE_CLOSING)
		return;
	if (s->busy != 0) {
		if (s->pending_close == NULL)
			s->pending_close = reason;
		conn_want(s->conn, false, false);
		return;
	}
	if (s->state == POP3_STATE_TRANSACTION)
		log_ctx_info(&s->log,
			     "pop3: Disconnected: %s top=%llu retr=%llu/%llu "
			     "del=%llu/%zu", reason,
			     (unsigned long long)s->top_count,
			     (unsigned long long)s->retr_count,
			     (unsigned long long)s->retr_bytes,
			     (unsigned long long)s->dele_count, s->msg_count);
	else
		log_ctx_info(&s->log, "pop3: Disconnected: %s", reason);
	session_set_state(s, POP3_STATE_CLOSING);
	auth_request_cancel(&s->auth_req);
	conn_want(s->conn, false, false);
	net_timer_stop(s->idle_timer);
	net_timer_stop(s->delay_timer);
	net_timer_start(s->free_timer, 0, false);
}

static void bad_command(struct pop3_session *s)
{
	if (++s->bad_commands >= s->cfg->set.max_bad_commands) {
		reply(s, "-ERR Too many bad commands.");
		s->close_reason = "Too many bad commands";
	}
}

/* ---- the mailbox --------------------------------------------------------- */

static struct str name_base(const char *name)
{
	return str_from(name, strcspn(name, ":"));
}

/* Opens dir through the mailbox layer (backend/mailbox.h: scan, UID list,
 * index, all under their locks; the same view IMAP has, so POP3 and IMAP
 * sessions of a user agree on messages and UIDs). On success the messages,
 * sorted by UID, are in *msgs_r. Returns 0, or -1 with a message in err. */
static int inbox_load(const char *dir, uint32_t max_records,
		      struct pop3_msg **msgs_r, size_t *count_r,
		      uint32_t *uidvalidity_r, char *err, size_t errsize)
{
	struct mailbox_settings ms = { .max_messages = max_records,
				       .create = true };
	struct mailbox *mb = NULL;
	struct mailbox_message m;
	const char *error;

	if (login_mkdir_parents(dir) < 0) {
		str_printf(err, errsize, "mkdir of the parents of %s: %s", dir,
			   strerror(errno));
		return -1;
	}
	if (mailbox_open(dir, &ms, &mb, &error) < 0) {
		str_printf(err, errsize, "%s", error);
		return -1;
	}
	uint32_t n = mailbox_count(mb);
	struct pop3_msg *msgs = xcalloc((size_t)n + 1, sizeof(*msgs));
	size_t count = 0;
	for (uint32_t seq = 1; seq <= n; seq++) {
		if (!mailbox_lookup_seq(mb, seq, &m))
			continue;
		msgs[count].name = xstrdup(m.name);
		msgs[count].uid = m.uid;
		msgs[count].vsize = m.size;
		msgs[count].deleted = false;
		count++;
	}
	*uidvalidity_r = mailbox_uidvalidity(mb);
	mailbox_close(&mb);
	*msgs_r = msgs;
	*count_r = count;
	return 0;
}

/* ---- login ----------------------------------------------------------------- */

static void delay_timer_cb(void *context)
{
	struct pop3_session *s = context;

	reply(s, "%s", s->delayed_reply);
	session_set_state(s, POP3_STATE_AUTH);
	session_pump(s);
}

static void login_failed(struct pop3_session *s, const char *text,
			 uint32_t delay_ms)
{
	str_printf(s->delayed_reply, sizeof(s->delayed_reply), "%s", text);
	net_timer_start(s->delay_timer, delay_ms > 0 ? delay_ms : 1, false);
}

static bool login_open(struct pop3_session *s, const char *user)
{
	char err[512];
	const char *error;

	if (node_mail_location_expand(s->cfg->set.mail_location, str_cstr(user),
				      s->dir, sizeof(s->dir), &error) < 0) {
		log_ctx_error(&s->log, "pop3: mail_location for this user: %s",
			      error);
		return false;
	}
	if (inbox_load(s->dir, (uint32_t)s->cfg->set.max_messages, &s->msgs,
			 &s->msg_count, &s->uidvalidity, err, sizeof(err)) < 0) {
		log_ctx_error(&s->log, "pop3: INBOX %s: %s", s->dir, err);
		return false;
	}
	return true;
}

/* ---- the I/O pool ---------------------------------------------------------- */

enum pop3_busy {
	P_BUSY_NONE = 0,
	P_BUSY_LOGIN,   /* login_disk */
	P_BUSY_COMMAND, /* s->busy_cmd in TRANSACTION */
	P_BUSY_STREAM,  /* the next piece of a RETR/TOP */
};

static void login_disk(struct pop3_session *s);
static void login_finish(struct pop3_session *s);
static void dispatch(struct pop3_session *s, const struct pop3_command *cmd);
static void stream_msg_fill(struct pop3_session *s);

static void job_run(void *context)
{
	struct pop3_session *s = context;

	io_pool_test_delay(s->user);
	switch ((enum pop3_busy)s->busy) {
	case P_BUSY_LOGIN:
		login_disk(s);
		break;
	case P_BUSY_COMMAND:
		dispatch(s, &s->busy_cmd);
		break;
	case P_BUSY_STREAM:
		stream_msg_fill(s);
		break;
	case P_BUSY_NONE:
		break;
	}
}

static void job_done(struct net_worker *worker, void *context)
{
	struct pop3_session *s = context;
	enum pop3_busy kind = (enum pop3_busy)s->busy;
	(void)worker;

	s->busy = P_BUSY_NONE;
	if (s->pending_close != NULL) {
		session_close(s, s->pending_close);
		return;
	}
	if (kind == P_BUSY_LOGIN) {
		login_finish(s);
		return;
	}
	session_pump(s);
}

static bool offload(struct pop3_session *s, enum pop3_busy kind)
{
	if (server_io == NULL)
		return false;
	s->busy = kind;
	if (io_pool_submit(server_io, s->pw->worker, job_run, job_done, s,
			   &s->job_running) < 0) {
		s->busy = P_BUSY_NONE;
		return false;
	}
	conn_want(s->conn, false, false);
	return true;
}

static void auth_callback(const struct auth_result *result, void *context)
{
	struct pop3_session *s = context;
	char key[512];

	s->auth_req = NULL;
	if (result->warning != NULL)
		log_ctx_warnx(&s->log, "pop3: auth: %s", result->warning);
	if (result->code != AUTH_RESULT_OK) {
		log_ctx_info(&s->log, "pop3: Login failed: %s (%s)",
			     auth_result_code_str(result->code),
			     result->log_reason != NULL ? result->log_reason : "-");
		login_failed(s, result->code == AUTH_RESULT_TEMPFAIL
				    ? "-ERR [SYS/TEMP] Temporary authentication failure."
				    : "-ERR [AUTH] Authentication failed.",
			     result->delay_ms);
		return;
	}
	log_ctx_set_user(&s->log, str_cstr(result->user));
	if (s->master_user != NULL)
		log_ctx_info(&s->log, "pop3: Master user %s logs in as %s",
			     s->master_user, result->user);
	if (str_printf(key, sizeof(key), "%s %s", result->user, s->ip) < 0 ||
	    !userip_take(&pop3_userip, key,
					 s->cfg->set.mail_max_userip_connections)) {
		log_ctx_info(&s->log, "pop3: Login refused: too many sessions "
			     "for this user and IP (mail_max_userip_connections=%llu)",
			     (unsigned long long)s->cfg->set.mail_max_userip_connections);
		login_failed(s, "-ERR [IN-USE] Maximum number of connections "
			     "from user+IP exceeded (mail_max_userip_connections).", 1);
		return;
	}
	s->userip_key = xstrdup(key);
	s->user = xstrdup(result->user);
	if (offload(s, P_BUSY_LOGIN))
		return;
	login_disk(s);
	login_finish(s);
}

/* The disk part of a login (may run on the pool): the INBOX and the
 * owner file. */
static void login_disk(struct pop3_session *s)
{
	s->login_ok = login_open(s, s->user);
	if (!s->login_ok)
		return;
	char root[MAILDIR_PATH_MAX];
	const char *lerr;
	if (node_mail_location_expand(s->cfg->set.mail_location,
				      str_cstr(s->user), root, sizeof(root),
				      &lerr) >= 0)
		s->owner = owner_acquire(s->user, root, &s->log);
}

/* Back on the loop: the answer. */
static void login_finish(struct pop3_session *s)
{
	if (!s->login_ok) {
		login_failed(s, "-ERR [SYS/TEMP] Couldn't open INBOX.", 1);
		return;
	}
	uint64_t total = 0;
	for (size_t i = 0; i < s->msg_count; i++)
		total += s->msgs[i].vsize;
	log_ctx_info(&s->log, "pop3: Login: messages=%zu size=%llu "
		     "uidvalidity=%u", s->msg_count, (unsigned long long)total,
		     s->uidvalidity);
	session_set_state(s, POP3_STATE_TRANSACTION);
	reply(s, "+OK Logged in.");
	session_pump(s);
}

static void master_callback(const struct auth_result *result, void *context)
{
	struct pop3_session *s = context;

	s->auth_req = NULL;
	if (result->code != AUTH_RESULT_OK) {
		log_ctx_info(&s->log, "pop3: Master user login failed: %s "
			     "(master=%s)", auth_result_code_str(result->code),
			     s->master_user);
		login_failed(s, result->code == AUTH_RESULT_TEMPFAIL
				    ? "-ERR [SYS/TEMP] Temporary authentication failure."
				    : "-ERR [AUTH] Authentication failed.",
			     result->delay_ms);
		return;
	}
	const struct auth_request_params params = {
		.user = str_cstr(s->master_target),
		.service = "pop3",
		.client_ip = s->ip,
		.session_id = s->session_id,
		.flags = AUTH_REQUEST_FLAG_LOOKUP_ONLY,
	};
	s->auth_req = auth_request_new(server_auth,
				       net_worker_base(s->pw->worker), &params,
				       auth_callback, s);
}

static void auth_start(struct pop3_session *s, struct str user,
		       struct str authzid, struct str password)
{
	struct str target, master;

	if (master_auth != NULL && s->trusted &&
	    login_master_split(user, authzid,
			       s->cfg->set.auth_master_user_separator, &target,
			       &master)) {
		free(s->master_user);
		free(s->master_target);
		s->master_user = xstrndup(master.p, master.len);
		s->master_target = xstrndup(target.p, target.len);
		const struct auth_request_params mp = {
			.user = master,
			.password = password,
			.service = "pop3",
			.client_ip = s->ip,
			.session_id = s->session_id,
		};
		session_set_state(s, POP3_STATE_AUTHING);
		s->auth_req = auth_request_new(master_auth,
					       net_worker_base(s->pw->worker),
					       &mp, master_callback, s);
		return;
	}
	const struct auth_request_params params = {
		.user = user,
		.authzid = authzid,
		.password = password,
		.service = "pop3",
		.client_ip = s->ip,
		.session_id = s->session_id,
	};
	session_set_state(s, POP3_STATE_AUTHING);
	s->auth_req = auth_request_new(server_auth,
				       net_worker_base(s->pw->worker), &params,
				       auth_callback, s);
}

/* PLAIN: [authzid] NUL authcid NUL password (RFC 4616). */
static void sasl_plain(struct pop3_session *s, struct str b64)
{
	struct buf *dec = buf_new_secret(64, s->cfg->set.max_line_length);
	struct str all, authzid, rest, authcid, pass;

	if (base64_decode(b64, dec) < 0) {
		buf_free_secret(&dec);
		session_set_state(s, POP3_STATE_AUTH);
		reply(s, "-ERR [AUTH] Invalid base64 data in initial response");
		bad_command(s);
		return;
	}
	all = buf_str(dec);
	if (!str_split(all, '\0', &authzid, &rest) ||
	    !str_split(rest, '\0', &authcid, &pass) ||
	    str_index(pass, '\0') >= 0 || authcid.len == 0) {
		buf_free_secret(&dec);
		session_set_state(s, POP3_STATE_AUTH);
		reply(s, "-ERR [AUTH] Authentication failed.");
		bad_command(s);
		return;
	}
	auth_start(s, authcid, authzid, pass);
	buf_free_secret(&dec);
}

/* ---- commands -------------------------------------------------------------- */

/* A message number argument: 1..count, not deleted. NULL after replying
 * the error. */
static struct pop3_msg *msg_arg(struct pop3_session *s, struct str arg)
{
	uint64_t n;

	if (!str_to_u64(arg, UINT32_MAX, &n) || n == 0) {
		char san[64];
		reply(s, "-ERR Invalid message number: %s",
		      str_sanitize(arg, san, sizeof(san)));
		return NULL;
	}
	if (n > s->msg_count) {
		reply(s, "-ERR There's no message %llu.", (unsigned long long)n);
		return NULL;
	}
	struct pop3_msg *m = &s->msgs[n - 1];
	if (m->deleted) {
		reply(s, "-ERR Message is deleted.");
		return NULL;
	}
	return m;
}

static void cmd_stat(struct pop3_session *s)
{
	size_t count = 0;
	uint64_t size = 0;
	for (size_t i = 0; i < s->msg_count; i++) {
		if (!s->msgs[i].deleted) {
			count++;
			size += s->msgs[i].vsize;
		}
	}
	reply(s, "+OK %zu %llu", count, (unsigned long long)size);
}

static void cmd_list_uidl(struct pop3_session *s,
			  const struct pop3_command *cmd, bool uidl)
{
	if (cmd->arg_count == 0) {
		if (uidl) {
			reply(s, "+OK");
		} else {
			size_t count = 0;
			for (size_t i = 0; i < s->msg_count; i++)
				count += !s->msgs[i].deleted;
			reply(s, "+OK %zu messages:", count);
		}
		s->stream = uidl ? POP3_STREAM_UIDL : POP3_STREAM_LIST;
		s->list_next = 0;
		return;
	}
	struct pop3_msg *m = msg_arg(s, cmd->args[0]);
	if (m == NULL)
		return;
	size_t n = (size_t)(m - s->msgs) + 1;
	if (uidl)
		reply(s, "+OK %zu %08x%08x", n, m->uid, s->uidvalidity);
	else
		reply(s, "+OK %zu %llu", n, (unsigned long long)m->vsize);
}

static void cmd_retr_top(struct pop3_session *s,
			 const struct pop3_command *cmd, bool top)
{
	char path[MAILDIR_PATH_MAX], found[MAILDIR_NAME_MAX + 1];
	struct maildir_error merr;
	uint64_t lines = 0;

	if (cmd->arg_count < (top ? 2u : 1u)) {
		reply(s, "-ERR Invalid message number: ");
		bad_command(s);
		return;
	}
	struct pop3_msg *m = msg_arg(s, cmd->args[0]);
	if (m == NULL)
		return;
	if (top && !str_to_u64(cmd->args[1], UINT64_MAX, &lines)) {
		char san[64];
		reply(s, "-ERR Invalid number of lines: %s",
		      str_sanitize(cmd->args[1], san, sizeof(san)));
		return;
	}
	int fd = -1;
	if (str_printf(path, sizeof(path), "%s/cur/%s", s->dir, m->name) >= 0)
		fd = open(path, O_RDONLY | O_CLOEXEC);
	else
		errno = ENAMETOOLONG;
	if (fd == -1 && errno == ENOENT &&
	    maildir_find_base(s->dir, "cur", name_base(m->name), found,
			      sizeof(found), &merr) == 1) {
		/* another process changed its flags: same message */
		free(m->name);
		m->name = xstrdup(found);
		if (str_printf(path, sizeof(path), "%s/cur/%s", s->dir,
			       m->name) >= 0)
			fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	if (fd == -1) {
		if (errno == ENOENT) {
			reply(s, "-ERR Message was expunged by another session.");
		} else {
			log_ctx_warn(&s->log, "pop3: open(%s)", path);
			reply(s, "-ERR [SYS/TEMP] Internal error occurred.");
		}
		return;
	}
	s->fd = fd;
	s->top = top;
	s->top_lines = lines;
	s->body_lines = 0;
	s->in_body = false;
	s->at_line_start = true;
	s->prev_cr = false;
	s->line_len = 0;
	s->stream = POP3_STREAM_MSG;
	if (top) {
		s->top_count++;
		reply(s, "+OK");
	} else {
		s->retr_count++;
		s->retr_bytes += m->vsize;
		reply(s, "+OK %llu octets", (unsigned long long)m->vsize);
	}
}

static void cmd_dele(struct pop3_session *s, const struct pop3_command *cmd)
{
	if (cmd->arg_count == 0) {
		reply(s, "-ERR Invalid message number: ");
		bad_command(s);
		return;
	}
	struct pop3_msg *m = msg_arg(s, cmd->args[0]);
	if (m == NULL)
		return;
	m->deleted = true;
	s->dele_count++;
	reply(s, "+OK Marked to be deleted.");
}

static void cmd_rset(struct pop3_session *s)
{
	for (size_t i = 0; i < s->msg_count; i++)
		s->msgs[i].deleted = false;
	s->dele_count = 0;
	reply(s, "+OK");
}

/* QUIT in TRANSACTION: the UPDATE state of RFC 1939. */
static void cmd_quit_update(struct pop3_session *s)
{
	bool failed = false;

	if (s->dele_count == 0) {
		reply(s, "+OK Logging out.");
		s->close_reason = "Logged out";
		return;
	}
	/* through the mailbox layer: file, UID list and index together */
	struct mailbox_settings ms = {
		.max_messages = (uint32_t)s->cfg->set.max_messages,
	};
	struct mailbox *mb = NULL;
	const char *error;
	if (mailbox_open(s->dir, &ms, &mb, &error) < 0) {
		log_ctx_error(&s->log, "pop3: expunge: %s", error);
		failed = true;
	}
	for (size_t i = 0; i < s->msg_count && mb != NULL; i++) {
		if (!s->msgs[i].deleted)
			continue;
		if (mailbox_expunge(mb, s->msgs[i].uid, &error) < 0) {
			log_ctx_error(&s->log, "pop3: expunge uid %u: %s",
				      s->msgs[i].uid, error);
			failed = true;
		}
	}
	mailbox_close(&mb);
	if (failed) {
		reply(s, "-ERR [SYS/TEMP] Failed to delete some messages.");
		s->close_reason = "Logged out (expunge failed)";
	} else {
		reply(s, "+OK Logging out, messages deleted.");
		s->close_reason = "Logged out";
	}
}

/* XCLIENT ADDR=<ip> PORT=<n> SESSION=<id> TTL=<n> from a trusted proxy:
 * the real client, for logs and the per user+IP limit. */
static void cmd_xclient(struct pop3_session *s, const struct pop3_command *cmd)
{
	for (size_t i = 0; i < cmd->arg_count; i++) {
		struct str k, v;
		if (!str_split(cmd->args[i], '=', &k, &v))
			continue;
		if (str_eq_nocase(k, STR("ADDR")))
			(void)login_proxy_addr(v, &s->log, s->ip);
		else if (str_eq_nocase(k, STR("SESSION")))
			(void)login_proxy_session(v, &s->log, s->session_id);
	}
	reply(s, "+OK");
}

static void cmd_auth(struct pop3_session *s, const struct pop3_command *cmd)
{
	if (cmd->arg_count == 0) {
		buf_append_cstr(s->out, "+OK\r\nPLAIN\r\n.\r\n");
		return;
	}
	if (!str_eq_nocase(cmd->args[0], STR("PLAIN"))) {
		reply(s, "-ERR [AUTH] Unsupported authentication mechanism.");
		bad_command(s);
		return;
	}
	if (cmd->args_overflow || cmd->arg_count > 2) {
		reply(s, "-ERR [AUTH] Invalid base64 data in initial response");
		bad_command(s);
		return;
	}
	if (cmd->arg_count == 2) {
		sasl_plain(s, str_eq(cmd->args[1], STR("=")) ? STR("")
							       : cmd->args[1]);
		return;
	}
	session_set_state(s, POP3_STATE_AUTH_SASL);
	buf_append_cstr(s->out, "+ \r\n");
}

/* May run on a pool thread (TRANSACTION commands): nothing here may touch
 * the loop (timers, the conn's events). */
static void dispatch(struct pop3_session *s, const struct pop3_command *cmd)
{
	bool authed = s->state == POP3_STATE_TRANSACTION;

	switch (cmd->verb) {
	case POP3_VERB_CAPA:
		buf_append_cstr(s->out, POP3_CAPA_HEAD);
		if (server_tls != NULL && !conn_is_tls(s->conn) && !authed)
			buf_append_cstr(s->out, "STLS\r\n");
		buf_append_cstr(s->out, POP3_CAPA_TAIL);
		return;
	case POP3_VERB_XCLIENT:
		if (authed || !s->trusted)
			break;
		cmd_xclient(s, cmd);
		return;
	case POP3_VERB_STLS:
		if (authed)
			break;
		if (server_tls == NULL) {
			reply(s, "-ERR TLS support isn't enabled.");
			return;
		}
		if (conn_is_tls(s->conn)) {
			reply(s, "-ERR We are already using TLS.");
			return;
		}
		reply(s, "+OK Begin TLS negotiation now.");
		s->starttls_pending = true;
		return;
	case POP3_VERB_QUIT:
		if (authed) {
			cmd_quit_update(s);
		} else {
			reply(s, "+OK Logging out");
			s->close_reason = "Aborted login by logging out";
		}
		return;
	case POP3_VERB_NOOP:
		if (authed) {
			reply(s, "+OK");
			return;
		}
		break;
	case POP3_VERB_USER:
		if (!authed) {
			buf_free(&s->last_user);
			s->last_user = buf_new(64, s->cfg->set.max_line_length);
			buf_append_str(s->last_user, cmd->rest);
			reply(s, "+OK");
			return;
		}
		break;
	case POP3_VERB_PASS:
		if (!authed) {
			if (s->last_user == NULL) {
				reply(s, "-ERR No username given.");
				bad_command(s);
				return;
			}
			struct buf *u = s->last_user;
			s->last_user = NULL;
			auth_start(s, buf_str(u), STR(""), cmd->rest);
			buf_free(&u);
			return;
		}
		break;
	case POP3_VERB_AUTH:
		if (!authed) {
			cmd_auth(s, cmd);
			return;
		}
		break;
	case POP3_VERB_STAT:
		if (authed) {
			cmd_stat(s);
			return;
		}
		break;
	case POP3_VERB_LIST:
	case POP3_VERB_UIDL:
		if (authed) {
			cmd_list_uidl(s, cmd, cmd->verb == POP3_VERB_UIDL);
			return;
		}
		break;
	case POP3_VERB_RETR:
	case POP3_VERB_TOP:
		if (authed) {
			cmd_retr_top(s, cmd, cmd->verb == POP3_VERB_TOP);
			return;
		}
		break;
	case POP3_VERB_DELE:
		if (authed) {
			cmd_dele(s, cmd);
			return;
		}
		break;
	case POP3_VERB_RSET:
		if (authed) {
			cmd_rset(s);
			return;
		}
		break;
	default:
		break;
	}
	char san[64];
	if (authed)
		reply(s, "-ERR Unknown command: %s",
		      str_sanitize(cmd->verb_str, san, sizeof(san)));
	else
		reply(s, "-ERR Unknown command.");
	bad_command(s);
}

/* Handles what is in s->in. Returns true when it made progress (a command
 * or an error was handled), false when more input is needed. */
static bool handle_input(struct pop3_session *s)
{
	struct pop3_parse_error perr;
	size_t consumed = 0;

	if (s->in_pos == s->in_len)
		return false;
	const uint8_t *p = s->in + s->in_pos;
	size_t len = s->in_len - s->in_pos;
	if (s->state == POP3_STATE_AUTH_SASL) {
		struct str line;
		enum pop3_parse_result r = pop3_parser_read_line(
		    s->parser, p, len, &consumed, &line, &perr);
		s->in_pos += consumed;
		if (r == POP3_PARSE_MORE)
			return false;
		if (r == POP3_PARSE_ERROR) {
			session_set_state(s, POP3_STATE_AUTH);
			reply(s, "-ERR [AUTH] %s", perr.msg);
			bad_command(s);
		} else if (str_eq(line, STR("*"))) {
			session_set_state(s, POP3_STATE_AUTH);
			reply(s, "-ERR [AUTH] Authentication aborted by client.");
		} else {
			sasl_plain(s, line);
		}
		str_wipe(s->in, s->in_pos);
		return true;
	}
	struct pop3_command cmd;
	enum pop3_parse_result r =
	    pop3_parser_parse(s->parser, p, len, &consumed, &cmd, &perr);
	s->in_pos += consumed;
	if (r == POP3_PARSE_MORE)
		return false;
	if (s->cfg->set.idle_timeout_msecs > 0)
		net_timer_start(s->idle_timer,
				(unsigned int)s->cfg->set.idle_timeout_msecs,
				false);
	if (r == POP3_PARSE_ERROR) {
		if (perr.kind == POP3_PARSE_ERR_TOO_LONG)
			reply(s, "-ERR Input line too long.");
		else
			reply(s, "-ERR Unknown command.");
		bad_command(s);
		return true;
	}
	if (s->state == POP3_STATE_TRANSACTION) {
		s->busy_cmd = cmd;
		if (offload(s, P_BUSY_COMMAND))
			return true;
	}
	dispatch(s, &cmd);
	/* PASS and AUTH lines carry secrets */
	if (cmd.verb == POP3_VERB_PASS || cmd.verb == POP3_VERB_AUTH)
		str_wipe(s->in, s->in_pos);
	return true;
}

/* ---- streaming bodies ---------------------------------------------------- */

static void stream_list_fill(struct pop3_session *s)
{
	while (s->list_next < s->msg_count && s->out->len < LIST_CHUNK) {
		const struct pop3_msg *m = &s->msgs[s->list_next++];
		if (m->deleted)
			continue;
		if (s->stream == POP3_STREAM_UIDL)
			buf_printf(s->out, "%zu %08x%08x\r\n", s->list_next,
				   m->uid, s->uidvalidity);
		else
			buf_printf(s->out, "%zu %llu\r\n", s->list_next,
				   (unsigned long long)m->vsize);
	}
	if (s->list_next >= s->msg_count) {
		buf_append_cstr(s->out, ".\r\n");
		s->stream = POP3_STREAM_NONE;
	}
}

static void stream_msg_end(struct pop3_session *s)
{
	if (!s->at_line_start)
		buf_append_cstr(s->out, "\r\n");
	buf_append_cstr(s->out, ".\r\n");
	close(s->fd);
	s->fd = -1;
	s->stream = POP3_STREAM_NONE;
}

/* Sends the next piece of the message: bare LF -> CRLF, a '.' starting a
 * line doubled, TOP stops after the header and top_lines body lines. */
static void stream_msg_fill(struct pop3_session *s)
{
	uint8_t chunk[RETR_CHUNK], outb[RETR_CHUNK * 2 + 4];
	size_t o = 0;

	ssize_t n = read(s->fd, chunk, sizeof(chunk));
	if (n < 0) {
		log_ctx_warn(&s->log, "pop3: read of a message failed");
		s->close_reason = "message read failed";
		close(s->fd);
		s->fd = -1;
		s->stream = POP3_STREAM_NONE;
		return;
	}
	if (n == 0) {
		stream_msg_end(s);
		return;
	}
	bool done = false;
	if (s->top && s->in_body && s->body_lines >= s->top_lines)
		done = true;
	for (ssize_t i = 0; i < n && !done; i++) {
		uint8_t c = chunk[i];
		if (s->at_line_start && c == '.')
			outb[o++] = '.';
		if (c == '\n' && !s->prev_cr)
			outb[o++] = '\r';
		outb[o++] = c;
		s->prev_cr = c == '\r';
		s->at_line_start = c == '\n';
		if (c == '\n') {
			if (!s->in_body) {
				if (s->line_len == 0)
					s->in_body = true;
			} else {
				s->body_lines++;
			}
			s->line_len = 0;
			if (s->top && s->in_body &&
			    s->body_lines >= s->top_lines)
				done = true;
		} else if (c != '\r') {
			s->line_len++;
		}
	}
	buf_append(s->out, outb, o);
	if (done)
		stream_msg_end(s);
}

/* ---- I/O ----------------------------------------------------------------- */

static bool start_tls(struct pop3_session *s)
{
	char err[TLS_ERROR_MAX] = "";

	if (tls_server_start(server_tls, s->conn, err, sizeof(err)) < 0) {
		log_ctx_error(&s->log, "pop3: TLS initialization failed: %s",
			      err);
		session_close(s, "TLS initialization failed");
		return false;
	}
	return true;
}

static void session_pump(struct pop3_session *s)
{
	while (s->state != POP3_STATE_CLOSING) {
		if (s->busy != 0) {
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
		if (s->starttls_pending) {
			/* what came after STLS predates the handshake */
			s->starttls_pending = false;
			s->in_pos = s->in_len = 0;
			if (!start_tls(s))
				return;
			continue;
		}
		if (conn_in_handshake(s->conn)) {
			conn_want(s->conn, false, false);
			return;
		}
		if (s->stream == POP3_STREAM_MSG) {
			if (offload(s, P_BUSY_STREAM))
				return;
			stream_msg_fill(s);
			continue;
		}
		if (s->stream != POP3_STREAM_NONE) {
			stream_list_fill(s);
			continue;
		}
		if (s->state == POP3_STATE_AUTHING) {
			conn_want(s->conn, false, false);
			return;
		}
		if (s->pw->draining) {
			reply(s, "-ERR [SYS/TEMP] Server shutting down.");
			s->close_reason = "Server shutting down";
			continue;
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
	struct pop3_session *s = context;
	(void)c;

	if (ev == CONN_EV_ERROR) {
		session_close(s, conn_error(s->conn));
		return;
	}
	if (ev == CONN_EV_TLS_READY && !s->greeted) {
		s->greeted = true;
		greet(s);
	}
	session_pump(s);
}

static void idle_timer_cb(void *context)
{
	struct pop3_session *s = context;

	if (s->state == POP3_STATE_AUTHING || s->busy != 0)
		return;
	/* best effort: the reply goes if the socket takes it now */
	reply(s, "-ERR Disconnected for inactivity.");
	(void)conn_write(s->conn, s->out->data, s->out->len);
	session_close(s, "Disconnected for inactivity");
}

void pop3_server_accept(struct net_worker *worker, int fd,
			const struct net_addr *peer,
			const struct net_addr *local, void *context)
{
	struct pop3_worker *pw = net_worker_get_data(worker);
	struct pop3_session *s = xcalloc(1, sizeof(*s));
	struct event_base *base = net_worker_base(worker);
	bool implicit_tls = context != NULL && *(const bool *)context;
	(void)local;

	s->pw = pw;
	s->cfg = config_ref();
	s->fd = -1;
	/* answers are whole in our buffer: Nagle would only add a
	 * delayed-ACK stall between two writes of one answer */
	(void)net_set_nodelay(fd, true);
	s->conn = conn_new(base, fd, conn_cb, s);
	const struct pop3_parser_limits limits = {
		.max_line_len = s->cfg->set.max_line_length,
		.max_auth_line_len = s->cfg->set.max_line_length,
		.max_args = 8, /* XCLIENT has four */
	};
	s->parser = pop3_parser_new(&limits);
	s->out = buf_new(1024, OUT_MAX);
	s->idle_timer = net_timer_new(base, idle_timer_cb, s);
	s->delay_timer = net_timer_new(base, delay_timer_cb, s);
	s->free_timer = net_timer_new(base, session_free_cb, s);
	net_addr_ip_str(peer, s->ip, sizeof(s->ip));
	s->trusted = config_nets_match(&s->cfg->set.login_trusted_networks,
				       &peer->u.sa);
	log_session_id_new(s->session_id);
	log_ctx_init(&s->log);
	log_ctx_set_rip(&s->log, &peer->u.sa);
	log_ctx_set_session(&s->log, s->session_id);
	s->next = pw->sessions;
	if (pw->sessions != NULL)
		pw->sessions->prev = s;
	pw->sessions = s;
	pw->count++;
	log_ctx_debug(&s->log, "pop3: connected");
	if (s->cfg->set.idle_timeout_msecs > 0)
		net_timer_start(s->idle_timer,
				(unsigned int)s->cfg->set.idle_timeout_msecs,
				false);
	if (implicit_tls && server_tls != NULL) {
		if (start_tls(s))
			session_pump(s);
		return;
	}
	greet(s);
	session_pump(s);
}

/* ---- workers --------------------------------------------------------------- */

static void worker_init(struct net_worker *worker, void *context)
{
	struct pop3_worker *pw = xcalloc(1, sizeof(*pw));
	(void)context;
	pw->worker = worker;
	net_worker_set_data(worker, pw);
}

static void worker_stopping(struct net_worker *worker, void *context)
{
	struct pop3_worker *pw = net_worker_get_data(worker);
	(void)context;

	pw->draining = true;
	if (pw->count == 0) {
		net_worker_drained(worker);
		return;
	}
	/* sessions between commands close now; one that is sending a body
	 * or waiting for auth closes when it is done (or at the grace end) */
	for (struct pop3_session *s = pw->sessions; s != NULL; s = s->next) {
		if (s->state == POP3_STATE_CLOSING ||
		    s->state == POP3_STATE_AUTHING || s->busy != 0 ||
		    s->stream != POP3_STREAM_NONE || s->out->len > 0)
			continue;
		session_pump(s);
	}
}

static void worker_deinit(struct net_worker *worker, void *context)
{
	struct pop3_worker *pw = net_worker_get_data(worker);
	(void)context;

	pw->draining = false; /* no net_worker_drained from here */
	while (pw->sessions != NULL) {
		struct pop3_session *s = pw->sessions;
		/* the loop has ended: a job's done will not run, but its pool
		 * thread may still be in the session */
		io_pool_job_wait(&s->job_running);
		s->busy = P_BUSY_NONE;
		if (s->state != POP3_STATE_CLOSING)
			session_close(s, "Server shutting down");
		session_free_cb(s);
	}
	free(pw);
	net_worker_set_data(worker, NULL);
}

unsigned int pop3_server_worker_kick(struct net_worker *worker,
				     const char *user)
{
	struct pop3_worker *pw = net_worker_get_data(worker);
	unsigned int n = 0;

	if (pw == NULL)
		return 0;
	for (struct pop3_session *s = pw->sessions; s != NULL; s = s->next) {
		if (s->state != POP3_STATE_TRANSACTION || s->user == NULL ||
		    strcmp(s->user, user) != 0)
			continue;
		/* no UPDATE state: DELE marks are dropped (RFC 1939 6); no
		 * -ERR in the middle of a RETR (it would read as mail) */
		if (s->busy == 0 && s->stream == POP3_STREAM_NONE &&
		    s->out->len == 0) {
			reply(s, "-ERR [SYS/TEMP] Disconnected by the "
				 "administrator.");
			(void)conn_write(s->conn, s->out->data, s->out->len);
		}
		if (s->busy == 0)
			s->stream = POP3_STREAM_NONE;
		session_close(s, "Kicked by the administrator");
		n++;
	}
	return n;
}

static void worker_log(const char *message, void *context)
{
	(void)context;
	log_warnx("%s", message);
}

const struct net_workers_settings *pop3_server_worker_hooks(unsigned int count)
{
	static struct net_workers_settings set;
	set.count = count;
	set.init = worker_init;
	set.deinit = worker_deinit;
	set.stopping = worker_stopping;
	set.log = worker_log;
	return &set;
}
