/*
 * IMAP server of the mail node: sessions, I/O, login, command dispatch,
 * IDLE. Texts follow Dovecot 2.3's imap process so that clients, scripts
 * and admins see the familiar ("Logged in", "Disconnected: Logged out
 * in=.. out=..", "Error in IMAP command X: ...").
 *
 * Session flow: greeting -> NOAUTH (CAPABILITY, LOGIN, AUTHENTICATE PLAIN
 * with SASL-IR, ID, NOOP, LOGOUT) -> the auth library answers on this
 * thread -> AUTH (folders) -> SELECTED (messages). Every tagged answer is
 * preceded by the untagged updates of the selected mailbox (imap_done).
 *
 * Input: commands go through the tokenizer of lib/imap_parse.h, bounded by
 * imap_max_line_length and, for literals, imap_max_append_size. While a
 * FETCH answer streams, input is not read (pipelined commands wait).
 *
 * Disk I/O runs on the worker thread: a slow disk delays the other
 * sessions of that worker (known limit, see docs/backend.md).
 */
#include "imap_server.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "base64.h"
#include "imap_internal.h"
#include "login.h"
#include "io_pool.h"
#include "tls.h"
#include "owner.h"
#include "xmalloc.h"

#define IMAP_READY "mailring-backend ready."

/* ---- settings generations ------------------------------------------------ */

static pthread_mutex_t config_lock = PTHREAD_MUTEX_INITIALIZER;
static struct imap_config *config_current;
static struct auth *server_auth;
static struct tls_server *server_tls;
static struct auth *master_auth;
static struct io_pool *server_io;

void imap_server_set_io_pool(struct io_pool *pool)
{
	server_io = pool;
}

void imap_server_set_tls(struct tls_server *tls)
{
	server_tls = tls;
}

void imap_server_set_master_auth(struct auth *auth)
{
	master_auth = auth;
}

/* STARTTLS is offered on plain connections when TLS is configured. */
static const char *capability_preauth(const struct imap_session *s)
{
	return server_tls != NULL && !s->tls
		   ? IMAP_CAPABILITY_PREAUTH " STARTTLS"
		   : IMAP_CAPABILITY_PREAUTH;
}

static struct imap_config *config_ref(void)
{
	pthread_mutex_lock(&config_lock);
	struct imap_config *c = config_current;
	atomic_fetch_add((_Atomic unsigned int *)&c->refs, 1);
	pthread_mutex_unlock(&config_lock);
	return c;
}

static void config_unref(struct imap_config **c)
{
	if (*c == NULL)
		return;
	if (atomic_fetch_sub((_Atomic unsigned int *)&(*c)->refs, 1) == 1) {
		free((*c)->mail_location);
		free((*c)->trusted.nets);
		free(*c);
	}
	*c = NULL;
}

void imap_server_config_install(const struct node_settings *set)
{
	struct imap_config *c = xcalloc(1, sizeof(*c)), *old;

	c->mail_location = xstrdup(set->mail_location);
	c->max_line_length = set->imap_max_line_length;
	c->max_append_size = set->imap_max_append_size;
	c->idle_timeout_msecs = set->imap_idle_timeout_msecs;
	c->idle_notify_msecs = set->imap_idle_notify_interval_msecs;
	c->max_mailboxes = set->imap_max_mailboxes;
	c->session_memory_max = set->imap_session_memory_max;
	c->max_bad_commands = set->max_bad_commands;
	c->mail_max_userip_connections = set->mail_max_userip_connections;
	c->max_messages = set->max_messages;
	c->autocreate_special_use = set->imap_autocreate_special_use;
	c->trusted.count = set->login_trusted_networks.count;
	if (c->trusted.count > 0) {
		c->trusted.nets = xcalloc(c->trusted.count,
					  sizeof(*c->trusted.nets));
		memcpy(c->trusted.nets, set->login_trusted_networks.nets,
		       c->trusted.count * sizeof(*c->trusted.nets));
	}
	str_copy(str_cstr(set->auth_master_user_separator),
		 c->master_separator, sizeof(c->master_separator));
	c->refs = 1;
	pthread_mutex_lock(&config_lock);
	old = config_current;
	config_current = c;
	pthread_mutex_unlock(&config_lock);
	config_unref(&old);
}

void imap_server_init(struct auth *auth, const struct node_settings *set)
{
	server_auth = auth;
	imap_server_config_install(set);
}

void imap_server_deinit(void)
{
	pthread_mutex_lock(&config_lock);
	struct imap_config *old = config_current;
	config_current = NULL;
	pthread_mutex_unlock(&config_lock);
	config_unref(&old);
}

/* Sessions per user and IP (mail_max_userip_connections), apart from
 * POP3's, as Dovecot counts per service. */
static struct userip_table imap_userip = USERIP_TABLE_INIT;

/* ---- workers ------------------------------------------------------------- */

struct imap_worker {
	struct net_worker *worker;
	struct imap_session *sessions;
	unsigned int count;
	bool draining;
};

static _Thread_local struct imap_worker *worker_state;

/* ---- output -------------------------------------------------------------- */

static void out_failed(struct imap_session *s)
{
	if (s->close_reason == NULL)
		s->close_reason = "Output buffer full";
}

/* Formats into the output; a long line (a COPYUID set) gets a heap
 * buffer instead of being cut. */
static void out_vformat(struct imap_session *s, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void out_vformat(struct imap_session *s, const char *fmt, va_list ap)
{
	char line[1024];
	va_list ap2;

	va_copy(ap2, ap);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	if (n < 0) {
		va_end(ap2);
		out_failed(s);
		return;
	}
	if ((size_t)n < sizeof(line)) {
		va_end(ap2);
		if (buf_append(s->out, line, (size_t)n) < 0)
			out_failed(s);
		return;
	}
	if ((size_t)n > IMAP_OUT_MAX) {
		va_end(ap2);
		out_failed(s);
		return;
	}
	char *big = xmalloc((size_t)n + 1);
	(void)vsnprintf(big, (size_t)n + 1, fmt, ap2);
	va_end(ap2);
	if (buf_append(s->out, big, (size_t)n) < 0)
		out_failed(s);
	free(big);
}

void imap_out(struct imap_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	out_vformat(s, fmt, ap);
	va_end(ap);
}

void imap_out_str(struct imap_session *s, struct str text)
{
	if (buf_append_str(s->out, text) < 0)
		out_failed(s);
}

void imap_out_astring(struct imap_session *s, struct str text)
{
	bool quotable = text.len <= 1024;

	for (size_t i = 0; i < text.len && quotable; i++) {
		unsigned char c = (unsigned char)text.p[i];
		if (c == '\r' || c == '\n' || c == '\0' || c >= 0x80)
			quotable = false;
	}
	if (!quotable) {
		imap_out(s, "{%zu}\r\n", text.len);
		imap_out_str(s, text);
		return;
	}
	imap_out_str(s, STR("\""));
	for (size_t i = 0; i < text.len; i++) {
		if (text.p[i] == '"' || text.p[i] == '\\')
			imap_out_str(s, STR("\\"));
		imap_out_str(s, str_from(text.p + i, 1));
	}
	imap_out_str(s, STR("\""));
}

void imap_done(struct imap_session *s, const char *tag, bool allow_expunge,
	       const char *fmt, ...)
{
	va_list ap;

	if (s->state == IMAP_STATE_SELECTED)
		(void)imap_sync(s, allow_expunge, false);
	imap_out(s, "%s ", tag);
	va_start(ap, fmt);
	out_vformat(s, fmt, ap);
	va_end(ap);
	imap_out_str(s, STR("\r\n"));
}

size_t imap_session_memory(const struct imap_session *s)
{
	size_t n = sizeof(*s) + s->out->size;

	if (s->parser != NULL)
		n += imap_parser_memory(s->parser);
	n += (size_t)s->view_alloc * sizeof(*s->view);
	return n;
}

/* ---- session ------------------------------------------------------------- */

static void session_pump(struct imap_session *s);

static void session_free_cb(void *context)
{
	struct imap_session *s = context;
	struct imap_worker *iw = s->iw;

	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		iw->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	iw->count--;
	imap_fetch_free(&s->fetch);
	imap_unselect(s);
	net_timer_free(&s->idle_timer);
	net_timer_free(&s->delay_timer);
	net_timer_free(&s->free_timer);
	net_timer_free(&s->notify_timer);
	conn_free(&s->conn);
	imap_parser_free(&s->parser);
	buf_free(&s->out);
	owner_release(&s->owner);
	if (s->userip_key != NULL)
		userip_release(&imap_userip, s->userip_key);
	free(s->userip_key);
	free(s->user);
	free(s->master_user);
	free(s->master_target);
	config_unref(&s->cfg);
	free(s);
}

/* Ends the session (logged with reason); the memory goes from a timer,
 * never inside a callback of the session. */
static void session_close(struct imap_session *s, const char *reason)
{
	if (s->state == IMAP_STATE_CLOSING)
		return;
	if (s->busy != 0) {
		/* a pool thread is using the session: close when it is done */
		if (s->pending_close == NULL)
			s->pending_close = reason;
		conn_want(s->conn, false, false);
		return;
	}
	if (s->user != NULL)
		log_ctx_info(&s->log,
			     "imap: Disconnected: %s in=%llu out=%llu "
			     "commands=%llu", reason, conn_bytes_in(s->conn),
			     conn_bytes_out(s->conn),
			     (unsigned long long)s->commands);
	else
		log_ctx_info(&s->log, "imap-login: Disconnected: %s", reason);
	s->state = IMAP_STATE_CLOSING;
	auth_request_cancel(&s->auth_req);
	conn_want(s->conn, false, false);
	net_timer_stop(s->idle_timer);
	net_timer_stop(s->delay_timer);
	net_timer_stop(s->notify_timer);
	net_timer_start(s->free_timer, 0, false);
}

void imap_bad_command(struct imap_session *s)
{
	if (++s->bad_commands >= s->cfg->max_bad_commands) {
		imap_out(s, "* BYE Too many invalid IMAP commands.\r\n");
		s->close_reason = "Too many invalid commands";
	}
}

/* ---- login --------------------------------------------------------------- */

static void delay_timer_cb(void *context)
{
	struct imap_session *s = context;

	imap_out(s, "%s\r\n", s->delayed_reply);
	s->state = IMAP_STATE_NOAUTH;
	session_pump(s);
}

static void login_failed(struct imap_session *s, const char *text,
			 uint32_t delay_ms)
{
	str_printf(s->delayed_reply, sizeof(s->delayed_reply), "%s %s", s->tag,
		   text);
	net_timer_start(s->delay_timer, delay_ms > 0 ? delay_ms : 1, false);
}

static bool login_open(struct imap_session *s)
{
	const char *error;
	struct maildir_error merr;

	if (node_mail_location_expand(s->cfg->mail_location,
				      str_cstr(s->user), s->root,
				      sizeof(s->root), &error) < 0) {
		log_ctx_error(&s->log, "imap: mail_location for this user: %s",
			      error);
		return false;
	}
	if (login_mkdir_parents(s->root) < 0) {
		log_ctx_error(&s->log, "imap: mkdir of the parents of %s: %s",
			      s->root, strerror(errno));
		return false;
	}
	if (maildir_create(s->root, &merr) < 0) {
		log_ctx_error(&s->log, "imap: INBOX %s: %s", s->root, merr.msg);
		return false;
	}
	if (s->cfg->autocreate_special_use)
		imap_folders_autocreate(s);
	return true;
}

static void auth_callback(const struct auth_result *result, void *context)
{
	struct imap_session *s = context;
	char key[512];

	s->auth_req = NULL;
	if (result->warning != NULL)
		log_ctx_warnx(&s->log, "imap: auth: %s", result->warning);
	if (result->code != AUTH_RESULT_OK) {
		log_ctx_info(&s->log, "imap-login: Login failed: %s (%s)",
			     auth_result_code_str(result->code),
			     result->log_reason != NULL ? result->log_reason
							: "-");
		login_failed(s,
			     result->code == AUTH_RESULT_TEMPFAIL
				 ? "NO [UNAVAILABLE] Temporary authentication "
				   "failure."
				 : "NO [AUTHENTICATIONFAILED] Authentication "
				   "failed.",
			     result->delay_ms);
		return;
	}
	log_ctx_set_user(&s->log, str_cstr(result->user));
	if (s->master_user != NULL)
		log_ctx_info(&s->log, "imap: Master user %s logs in as %s",
			     s->master_user, result->user);
	if (str_printf(key, sizeof(key), "%s %s", result->user, s->ip) < 0 ||
	    !userip_take(&imap_userip, key,
					 s->cfg->mail_max_userip_connections)) {
		log_ctx_info(&s->log,
			     "imap-login: Login refused: too many sessions for "
			     "this user and IP (mail_max_userip_connections="
			     "%llu)",
			     (unsigned long long)
				 s->cfg->mail_max_userip_connections);
		login_failed(s,
			     "NO [LIMIT] Maximum number of connections from "
			     "user+IP exceeded (mail_max_userip_connections="
			     "too many)",
			     1);
		return;
	}
	s->userip_key = xstrdup(key);
	s->user = xstrdup(result->user);
	if (!login_open(s)) {
		free(s->user);
		s->user = NULL;
		userip_release(&imap_userip, s->userip_key);
		free(s->userip_key);
		s->userip_key = NULL;
		login_failed(s, "NO [UNAVAILABLE] Internal error occurred. "
				"Refer to server log for more information.",
			     1);
		return;
	}
	s->owner = owner_acquire(s->user, s->root, &s->log);
	log_ctx_info(&s->log, "imap: Logged in");
	s->state = IMAP_STATE_AUTH;
	imap_out(s, "%s OK [CAPABILITY " IMAP_CAPABILITY_POSTAUTH
		 "] Logged in\r\n", s->tag);
	session_pump(s);
}

/* The master passdb said yes: now the user it logs in as must exist. */
static void master_callback(const struct auth_result *result, void *context)
{
	struct imap_session *s = context;

	s->auth_req = NULL;
	if (result->code != AUTH_RESULT_OK) {
		log_ctx_info(&s->log, "imap-login: Master user login failed: "
			     "%s (master=%s)",
			     auth_result_code_str(result->code),
			     s->master_user);
		login_failed(s,
			     result->code == AUTH_RESULT_TEMPFAIL
				 ? "NO [UNAVAILABLE] Temporary authentication "
				   "failure."
				 : "NO [AUTHENTICATIONFAILED] Authentication "
				   "failed.",
			     result->delay_ms);
		return;
	}
	const struct auth_request_params params = {
		.user = str_cstr(s->master_target),
		.service = "imap",
		.client_ip = s->ip,
		.session_id = s->session_id,
		.flags = AUTH_REQUEST_FLAG_LOOKUP_ONLY,
	};
	s->auth_req = auth_request_new(server_auth,
				       net_worker_base(s->iw->worker), &params,
				       auth_callback, s);
}

static void auth_start(struct imap_session *s, struct str user,
		       struct str authzid, struct str password)
{
	struct str target, master;

	if (master_auth != NULL && s->trusted &&
	    login_master_split(user, authzid, s->cfg->master_separator,
			       &target, &master)) {
		free(s->master_user);
		free(s->master_target);
		s->master_user = xstrndup(master.p, master.len);
		s->master_target = xstrndup(target.p, target.len);
		const struct auth_request_params mp = {
			.user = master,
			.password = password,
			.service = "imap",
			.client_ip = s->ip,
			.session_id = s->session_id,
		};
		s->state = IMAP_STATE_AUTHING;
		s->auth_req = auth_request_new(master_auth,
					       net_worker_base(s->iw->worker),
					       &mp, master_callback, s);
		return;
	}
	const struct auth_request_params params = {
		.user = user,
		.authzid = authzid,
		.password = password,
		.service = "imap",
		.client_ip = s->ip,
		.session_id = s->session_id,
	};
	s->state = IMAP_STATE_AUTHING;
	s->auth_req = auth_request_new(server_auth,
				       net_worker_base(s->iw->worker), &params,
				       auth_callback, s);
}

/* PLAIN: [authzid] NUL authcid NUL password (RFC 4616). */
static void sasl_plain(struct imap_session *s, struct str b64)
{
	struct buf *dec = buf_new_secret(64, s->cfg->max_line_length);
	struct str all, authzid, rest, authcid, pass;

	if (base64_decode(b64, dec) < 0) {
		buf_free_secret(&dec);
		imap_out(s, "%s BAD Invalid base64 data in continued "
			 "response\r\n", s->tag);
		imap_bad_command(s);
		return;
	}
	all = buf_str(dec);
	if (!str_split(all, '\0', &authzid, &rest) ||
	    !str_split(rest, '\0', &authcid, &pass) ||
	    str_index(pass, '\0') >= 0 || authcid.len == 0) {
		buf_free_secret(&dec);
		imap_out(s, "%s NO [AUTHENTICATIONFAILED] Authentication "
			 "failed.\r\n", s->tag);
		imap_bad_command(s);
		return;
	}
	auth_start(s, authcid, authzid, pass);
	buf_free_secret(&dec);
}

static void cmd_login(struct imap_session *s, const struct imap_command *cmd)
{
	struct str user, pass;

	if (cmd->arg_count != 2 || !imap_arg_get_astring(&cmd->args[0], &user) ||
	    !imap_arg_get_astring(&cmd->args[1], &pass)) {
		imap_out(s, "%s BAD Error in IMAP command LOGIN: Invalid "
			 "arguments.\r\n", s->tag);
		imap_bad_command(s);
		return;
	}
	auth_start(s, user, STR(""), pass);
}

static void cmd_authenticate(struct imap_session *s,
			     const struct imap_command *cmd)
{
	struct str mech, ir;

	if (cmd->arg_count < 1 || cmd->arg_count > 2 ||
	    !imap_arg_get_astring(&cmd->args[0], &mech)) {
		imap_out(s, "%s BAD Error in IMAP command AUTHENTICATE: "
			 "Invalid arguments.\r\n", s->tag);
		imap_bad_command(s);
		return;
	}
	if (!str_eq_nocase(mech, STR("PLAIN"))) {
		imap_out(s, "%s NO Unsupported authentication mechanism.\r\n",
			 s->tag);
		imap_bad_command(s);
		return;
	}
	if (cmd->arg_count == 2) {
		if (!imap_arg_get_astring(&cmd->args[1], &ir)) {
			imap_out(s, "%s BAD Invalid initial response\r\n",
				 s->tag);
			return;
		}
		sasl_plain(s, str_eq(ir, STR("=")) ? STR("") : ir);
		return;
	}
	s->input_mode = IMAP_INPUT_SASL;
	imap_out(s, "+ \r\n");
}

static void sasl_line(struct imap_session *s, struct str line)
{
	s->input_mode = IMAP_INPUT_COMMAND;
	if (str_eq(line, STR("*"))) {
		imap_out(s, "%s BAD Authentication aborted by client.\r\n",
			 s->tag);
		return;
	}
	sasl_plain(s, line);
}

/* ---- commands of any state ----------------------------------------------- */

static void cmd_capability(struct imap_session *s)
{
	imap_out(s, "* CAPABILITY %s\r\n",
		 s->user == NULL ? capability_preauth(s)
				 : IMAP_CAPABILITY_POSTAUTH);
	imap_done(s, s->tag, true, "OK Pre-login capabilities listed, "
				   "post-login capabilities have more.");
}

/* A trusted proxy tells the real client (Dovecot's ID fields). */
static void id_from_proxy(struct imap_session *s, const struct imap_arg *l,
			  size_t count)
{
	for (size_t i = 0; i + 1 < count; i += 2) {
		struct str k, v;
		if (!imap_arg_get_astring(&l[i], &k) ||
		    !imap_arg_get_astring(&l[i + 1], &v))
			continue;
		if (str_eq_nocase(k, STR("x-originating-ip")))
			(void)login_proxy_addr(v, &s->log, s->ip);
		else if (str_eq_nocase(k, STR("x-session-id")))
			(void)login_proxy_session(v, &s->log, s->session_id);
	}
}

static void cmd_id(struct imap_session *s, const struct imap_command *cmd)
{
	/* the client's ID is logged (bounded), ours is short */
	if (cmd->arg_count == 1 && cmd->args[0].type == IMAP_ARG_LIST) {
		const struct imap_arg *l = cmd->args[0].list;
		char san[256];
		size_t used = 0;
		san[0] = '\0';
		for (size_t i = 0; i + 1 < cmd->args[0].list_count; i += 2) {
			struct str k, v;
			char ks[64], vs[96];
			if (!imap_arg_get_astring(&l[i], &k) ||
			    !imap_arg_get_astring(&l[i + 1], &v))
				continue;
			int n = str_printf(san + used, sizeof(san) - used,
					   "%s%s=%s", used > 0 ? " " : "",
					   str_sanitize(k, ks, sizeof(ks)),
					   str_sanitize(v, vs, sizeof(vs)));
			if (n < 0)
				break;
			used += (size_t)n;
		}
		if (used > 0)
			log_ctx_debug(&s->log, "imap: ID %s", san);
		if (s->trusted && s->user == NULL)
			id_from_proxy(s, l, cmd->args[0].list_count);
	}
	imap_out(s, "* ID (\"name\" \"mailring\" \"vendor\" \"mailring\")\r\n");
	imap_done(s, s->tag, true, "OK ID completed.");
}

static void cmd_enable(struct imap_session *s, const struct imap_command *cmd)
{
	bool any = false;

	if (cmd->arg_count == 0) {
		imap_done(s, s->tag, true,
			  "BAD Error in IMAP command ENABLE: Missing "
			  "arguments.");
		return;
	}
	for (size_t i = 0; i < cmd->arg_count; i++) {
		struct str name;
		if (!imap_arg_get_astring(&cmd->args[i], &name))
			continue;
		if (str_eq_nocase(name, STR("CONDSTORE")) && !s->condstore) {
			s->condstore = true;
			if (!any)
				imap_out(s, "* ENABLED");
			any = true;
			imap_out(s, " CONDSTORE");
		}
	}
	if (any)
		imap_out(s, "\r\n");
	imap_done(s, s->tag, true, "OK Enabled.");
}

static void cmd_namespace(struct imap_session *s)
{
	imap_out(s, "* NAMESPACE ((\"\" \".\")) NIL NIL\r\n");
	imap_done(s, s->tag, true, "OK Namespace completed.");
}

/* ---- the I/O pool --------------------------------------------------------- */

enum imap_busy {
	BUSY_NONE = 0,
	BUSY_COMMAND,   /* s->busy_cmd */
	BUSY_FETCH,     /* the next piece of s->fetch */
	BUSY_NOTIFY,    /* IDLE: look for changes */
	BUSY_IDLE_DONE, /* DONE: the tagged answer */
};

static void dispatch(struct imap_session *s, const struct imap_command *cmd);

static void job_run(void *context)
{
	struct imap_session *s = context;

	io_pool_test_delay(s->user);
	switch ((enum imap_busy)s->busy) {
	case BUSY_COMMAND:
		dispatch(s, &s->busy_cmd);
		break;
	case BUSY_FETCH:
		imap_fetch_fill(s);
		break;
	case BUSY_NOTIFY:
		(void)imap_sync(s, true, false);
		break;
	case BUSY_IDLE_DONE:
		imap_done(s, s->tag, true, "OK Idle completed.");
		break;
	case BUSY_NONE:
		break;
	}
}

static void job_done(struct net_worker *worker, void *context)
{
	struct imap_session *s = context;
	(void)worker;

	s->busy = BUSY_NONE;
	if (s->pending_close != NULL) {
		session_close(s, s->pending_close);
		return;
	}
	session_pump(s);
}

/* Runs kind on the pool. false when there is no pool (run it here). */
static bool offload(struct imap_session *s, enum imap_busy kind)
{
	if (server_io == NULL)
		return false;
	s->busy = kind;
	if (io_pool_submit(server_io, s->iw->worker, job_run, job_done, s,
			   &s->job_running) < 0) {
		s->busy = BUSY_NONE;
		return false;
	}
	conn_want(s->conn, false, false);
	return true;
}

static void notify_timer_cb(void *context)
{
	struct imap_session *s = context;

	if (s->input_mode != IMAP_INPUT_IDLE ||
	    s->state != IMAP_STATE_SELECTED || s->busy != 0)
		return;
	if (offload(s, BUSY_NOTIFY))
		return;
	(void)imap_sync(s, true, false);
	session_pump(s);
}

static void cmd_idle(struct imap_session *s)
{
	/* the first look for changes is the first timer tick: the command
	 * before IDLE reported everything up to it */
	s->input_mode = IMAP_INPUT_IDLE;
	imap_out(s, "+ idling\r\n");
	if (s->state == IMAP_STATE_SELECTED)
		net_timer_start(s->notify_timer,
				(unsigned int)s->cfg->idle_notify_msecs, true);
}

static void idle_line(struct imap_session *s, struct str line)
{
	net_timer_stop(s->notify_timer);
	s->input_mode = IMAP_INPUT_COMMAND;
	if (!str_eq_nocase(line, STR("DONE"))) {
		imap_out(s, "%s BAD Expected DONE.\r\n", s->tag);
		imap_bad_command(s);
		return;
	}
	if (s->state == IMAP_STATE_SELECTED && offload(s, BUSY_IDLE_DONE))
		return;
	imap_done(s, s->tag, true, "OK Idle completed.");
}

/* ---- dispatch ------------------------------------------------------------ */

enum cmd_states {
	ANY = 0x7,      /* not authenticated, authenticated, selected */
	NOAUTH = 0x1,
	AUTHED = 0x6,   /* authenticated or selected */
	SELECTED = 0x4,
};

static unsigned int state_bit(enum imap_state st)
{
	switch (st) {
	case IMAP_STATE_NOAUTH:
		return 0x1;
	case IMAP_STATE_AUTH:
		return 0x2;
	case IMAP_STATE_SELECTED:
		return 0x4;
	default:
		return 0;
	}
}

static bool name_is(struct str name, const char *want)
{
	return str_eq_nocase(name, str_cstr(want));
}

/* One command; the tag is in s->tag. May run on a pool thread (see
 * run_command): nothing here may touch the loop (timers, the conn). */
static void dispatch(struct imap_session *s, const struct imap_command *cmd)
{
	struct str name = cmd->name;
	unsigned int bit = state_bit(s->state);
	bool uid = false;
	char san[64];

	if (name_is(name, "UID") && cmd->arg_count > 0 &&
	    cmd->args[0].type == IMAP_ARG_ATOM) {
		uid = true;
		name = cmd->args[0].str;
	}
	struct imap_command sub = *cmd;
	if (uid) {
		sub.name = name;
		sub.args = cmd->args + 1;
		sub.arg_count = cmd->arg_count - 1;
	}
#define IS(n, states) (name_is(name, n) && (bit & (states)) != 0)
	if (!uid && IS("CAPABILITY", ANY)) {
		cmd_capability(s);
	} else if (!uid && IS("NOOP", ANY)) {
		imap_done(s, s->tag, true, "OK NOOP completed.");
	} else if (!uid && IS("CHECK", SELECTED)) {
		imap_done(s, s->tag, true, "OK Check completed.");
	} else if (!uid && IS("LOGOUT", ANY)) {
		imap_out(s, "* BYE Logging out\r\n");
		imap_out(s, "%s OK Logout completed.\r\n", s->tag);
		s->close_reason = "Logged out";
	} else if (!uid && IS("ID", ANY)) {
		cmd_id(s, cmd);
	} else if (!uid && IS("LOGIN", NOAUTH)) {
		cmd_login(s, cmd);
	} else if (!uid && IS("AUTHENTICATE", NOAUTH)) {
		cmd_authenticate(s, cmd);
	} else if (!uid && IS("STARTTLS", NOAUTH)) {
		if (server_tls == NULL) {
			imap_out(s, "%s BAD TLS support isn't enabled.\r\n",
				 s->tag);
		} else if (s->tls) {
			imap_out(s, "%s BAD TLS is already active.\r\n",
				 s->tag);
		} else {
			imap_out(s, "%s OK Begin TLS negotiation now.\r\n",
				 s->tag);
			s->starttls_pending = true;
		}
	} else if (!uid && (IS("LOGIN", AUTHED) || IS("AUTHENTICATE", AUTHED))) {
		imap_out(s, "%s BAD Already logged in.\r\n", s->tag);
	} else if (!uid && IS("ENABLE", AUTHED)) {
		cmd_enable(s, cmd);
	} else if (!uid && IS("NAMESPACE", AUTHED)) {
		cmd_namespace(s);
	} else if (!uid && IS("IDLE", AUTHED)) {
		cmd_idle(s);
	} else if (!uid && IS("SELECT", AUTHED)) {
		imap_cmd_select(s, s->tag, cmd, false);
	} else if (!uid && IS("EXAMINE", AUTHED)) {
		imap_cmd_select(s, s->tag, cmd, true);
	} else if (!uid && IS("CREATE", AUTHED)) {
		imap_cmd_create(s, s->tag, cmd);
	} else if (!uid && IS("DELETE", AUTHED)) {
		imap_cmd_delete(s, s->tag, cmd);
	} else if (!uid && IS("RENAME", AUTHED)) {
		imap_cmd_rename(s, s->tag, cmd);
	} else if (!uid && IS("SUBSCRIBE", AUTHED)) {
		imap_cmd_subscribe(s, s->tag, cmd, true);
	} else if (!uid && IS("UNSUBSCRIBE", AUTHED)) {
		imap_cmd_subscribe(s, s->tag, cmd, false);
	} else if (!uid && IS("LIST", AUTHED)) {
		imap_cmd_list(s, s->tag, cmd, false);
	} else if (!uid && IS("LSUB", AUTHED)) {
		imap_cmd_list(s, s->tag, cmd, true);
	} else if (!uid && IS("STATUS", AUTHED)) {
		imap_cmd_status(s, s->tag, cmd);
	} else if (!uid && IS("APPEND", AUTHED)) {
		imap_cmd_append(s, s->tag, cmd);
	} else if (!uid && IS("CLOSE", SELECTED)) {
		imap_cmd_close(s, s->tag, true);
	} else if (!uid && IS("UNSELECT", SELECTED)) {
		imap_cmd_close(s, s->tag, false);
	} else if (IS("EXPUNGE", SELECTED)) {
		imap_cmd_expunge(s, s->tag, &sub, uid);
	} else if (IS("SEARCH", SELECTED)) {
		imap_cmd_search(s, s->tag, &sub, uid);
	} else if (IS("FETCH", SELECTED)) {
		imap_cmd_fetch(s, s->tag, &sub, uid);
	} else if (IS("STORE", SELECTED)) {
		imap_cmd_store(s, s->tag, &sub, uid);
	} else if (IS("COPY", SELECTED)) {
		imap_cmd_copy(s, s->tag, &sub, uid, false);
	} else if (IS("MOVE", SELECTED)) {
		imap_cmd_copy(s, s->tag, &sub, uid, true);
	} else if (s->state == IMAP_STATE_NOAUTH) {
		imap_out(s, "%s BAD Error in IMAP command %s: Unknown command "
			 "(not logged in).\r\n", s->tag,
			 str_sanitize(cmd->name, san, sizeof(san)));
		imap_bad_command(s);
	} else if (s->state == IMAP_STATE_AUTH && bit != 0 &&
		   (name_is(name, "FETCH") || name_is(name, "STORE") ||
		    name_is(name, "SEARCH") || name_is(name, "COPY") ||
		    name_is(name, "MOVE") || name_is(name, "EXPUNGE") ||
		    name_is(name, "CLOSE") || name_is(name, "UNSELECT") ||
		    name_is(name, "CHECK"))) {
		imap_out(s, "%s BAD No mailbox selected.\r\n", s->tag);
	} else {
		imap_out(s, "%s BAD Error in IMAP command %s: Unknown "
			 "command.\r\n", s->tag,
			 str_sanitize(uid ? name : cmd->name, san,
				      sizeof(san)));
		imap_bad_command(s);
	}
#undef IS
}

/* Commands after login touch the disk (even NOOP syncs the mailbox): they
 * run on the I/O pool so that a slow disk stalls only this session. IDLE
 * and LOGOUT stay here (timers, no disk). The command's arguments live in
 * the parser, which is not used until the job is done. */
static void run_command(struct imap_session *s, const struct imap_command *cmd)
{
	s->commands++;
	if ((s->state == IMAP_STATE_AUTH || s->state == IMAP_STATE_SELECTED) &&
	    !name_is(cmd->name, "IDLE") && !name_is(cmd->name, "LOGOUT")) {
		s->busy_cmd = *cmd;
		if (offload(s, BUSY_COMMAND))
			return;
	}
	dispatch(s, cmd);
}

static void quickack(struct imap_session *s)
{
	int one = 1;
	(void)setsockopt(conn_fd(s->conn), IPPROTO_TCP, TCP_QUICKACK, &one,
			 sizeof(one));
}

/* false (answered with an untagged BAD) for a tag longer than
 * IMAP_TAG_MAX: a cut tag would leave the client waiting forever. */
static bool set_tag(struct imap_session *s, struct str tag)
{
	if (tag.len > IMAP_TAG_MAX) {
		imap_out(s, "* BAD Error in IMAP command received by server: "
			    "Tag too long.\r\n");
		imap_bad_command(s);
		return false;
	}
	memcpy(s->tag, tag.p, tag.len);
	s->tag[tag.len] = '\0';
	return true;
}

/* Handles what is in s->in. Returns true when it made progress (a
 * command, a line or an error was handled), false when more input is
 * needed. */
static bool handle_input(struct imap_session *s)
{
	struct imap_parse_error perr;
	struct imap_command cmd;
	size_t consumed = 0;

	if (s->in_pos == s->in_len)
		return false;
	const uint8_t *p = s->in + s->in_pos;
	size_t len = s->in_len - s->in_pos;

	if (s->input_mode != IMAP_INPUT_COMMAND) {
		struct str line;
		enum imap_parse_result r = imap_parser_read_line(
		    s->parser, p, len, &consumed, &line, &perr);
		s->in_pos += consumed;
		if (r == IMAP_PARSE_MORE)
			return false;
		if (r == IMAP_PARSE_ERROR) {
			imap_out(s, "* BAD %s\r\n", perr.msg);
			if (perr.fatal)
				s->close_reason = "Too long line";
			s->input_mode = IMAP_INPUT_COMMAND;
			net_timer_stop(s->notify_timer);
			return true;
		}
		if (s->input_mode == IMAP_INPUT_SASL)
			sasl_line(s, line);
		else
			idle_line(s, line);
		return true;
	}
	enum imap_parse_result r =
	    imap_parser_parse(s->parser, p, len, &consumed, &cmd, &perr);
	s->in_pos += consumed;
	switch (r) {
	case IMAP_PARSE_MORE:
		return false;
	case IMAP_PARSE_LITERAL_CONT:
		if (!set_tag(s, cmd.tag)) {
			imap_parser_reset(s->parser);
			return true;
		}
		if (imap_session_memory(s) + cmd.literal_size >
		    s->cfg->session_memory_max) {
			imap_out(s, "%s NO [LIMIT] Session memory limit "
				 "(imap_session_memory_max) reached.\r\n",
				 s->tag);
			imap_parser_reset(s->parser);
			return true;
		}
		imap_out(s, "+ OK\r\n");
		/* the client sends the literal and then its line end in two
		 * writes; with Nagle on its side, our delayed ACK would hold
		 * the second for ~40 ms: ACK at once while the literal comes */
		s->literal_pending = true;
		quickack(s);
		return true;
	case IMAP_PARSE_COMMAND:
		s->literal_pending = false;
		if (set_tag(s, cmd.tag))
			run_command(s, &cmd);
		return true;
	case IMAP_PARSE_ERROR:
	default:
		break;
	}
	char tag[IMAP_TAG_MAX + 1];
	size_t tlen = perr.tag.len > IMAP_TAG_MAX ? IMAP_TAG_MAX : perr.tag.len;
	memcpy(tag, perr.tag.p, tlen);
	tag[tlen] = '\0';
	if (perr.kind == IMAP_PARSE_ERR_LITERAL_TOO_BIG && !perr.fatal &&
	    tlen > 0) {
		imap_out(s, "%s NO [TOOBIG] Message too large "
			 "(imap_max_append_size=%llu).\r\n", tag,
			 (unsigned long long)s->cfg->max_append_size);
		return true;
	}
	if (perr.fatal) {
		imap_out(s, "* BAD %s\r\n", perr.msg);
		s->close_reason = perr.kind == IMAP_PARSE_ERR_TOO_LONG
				      ? "Too long line"
				      : "Invalid input";
		return true;
	}
	if (tlen > 0)
		imap_out(s, "%s BAD Error in IMAP command received by server: "
			 "%s\r\n", tag, perr.msg);
	else
		imap_out(s, "* BAD Error in IMAP command received by server: "
			 "%s\r\n", perr.msg);
	imap_bad_command(s);
	return true;
}

/* ---- I/O ----------------------------------------------------------------- */

/* false when the session was closed */
static bool start_tls(struct imap_session *s)
{
	char err[TLS_ERROR_MAX] = "";

	if (tls_server_start(server_tls, s->conn, err, sizeof(err)) < 0) {
		log_ctx_error(&s->log, "imap: TLS initialization failed: %s",
			      err);
		session_close(s, "TLS initialization failed");
		return false;
	}
	return true;
}

static void session_pump(struct imap_session *s)
{
	while (s->state != IMAP_STATE_CLOSING) {
		if (s->busy != 0) {
			conn_want(s->conn, false, false);
			return;
		}
		if (s->out->len > 0) {
			ssize_t n = conn_write(s->conn, s->out->data,
					       s->out->len);
			if (n > 0) {
				buf_consume(s->out, (size_t)n);
				/* a long FETCH is activity too */
				if (s->cfg->idle_timeout_msecs > 0)
					net_timer_start(
					    s->idle_timer,
					    (unsigned int)
						s->cfg->idle_timeout_msecs,
					    false);
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
			/* bytes the client sent after STARTTLS are dropped:
			 * they came before the handshake (RFC 3501 6.2.1) */
			s->starttls_pending = false;
			s->in_pos = s->in_len = 0;
			imap_parser_reset(s->parser);
			if (!start_tls(s))
				return;
			continue;
		}
		if (conn_in_handshake(s->conn)) {
			conn_want(s->conn, false, false);
			return;
		}
		if (s->fetch != NULL) {
			if (offload(s, BUSY_FETCH))
				return;
			imap_fetch_fill(s);
			continue;
		}
		if (s->state == IMAP_STATE_AUTHING) {
			conn_want(s->conn, false, false);
			return;
		}
		if (s->iw->draining) {
			imap_out(s, "* BYE Server shutting down.\r\n");
			s->close_reason = "Server shutting down";
			continue;
		}
		if (handle_input(s))
			continue;
		s->in_pos = s->in_len = 0;
		ssize_t n = conn_read(s->conn, s->in, sizeof(s->in));
		if (n > 0) {
			s->in_len = (size_t)n;
			if (s->literal_pending)
				quickack(s);
			if (s->cfg->idle_timeout_msecs > 0)
				net_timer_start(
				    s->idle_timer,
				    (unsigned int)s->cfg->idle_timeout_msecs,
				    false);
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

static void greet(struct imap_session *s)
{
	s->greeted = true;
	imap_out(s, "* OK [CAPABILITY %s] " IMAP_READY "\r\n",
		 capability_preauth(s));
}

static void conn_cb(struct conn *c, enum conn_event ev, void *context)
{
	struct imap_session *s = context;
	(void)c;

	if (ev == CONN_EV_ERROR) {
		session_close(s, conn_error(s->conn));
		return;
	}
	if (ev == CONN_EV_TLS_READY) {
		s->tls = true;
		if (!s->greeted)
			greet(s);
	}
	session_pump(s);
}

static void idle_timer_cb(void *context)
{
	struct imap_session *s = context;

	if (s->state == IMAP_STATE_AUTHING || s->busy != 0)
		return;
	if (s->fetch == NULL && s->out->len == 0)
		imap_out(s, "* BYE Disconnected for inactivity.\r\n");
	(void)conn_write(s->conn, s->out->data, s->out->len);
	session_close(s, "Disconnected for inactivity");
}

void imap_server_accept(struct net_worker *worker, int fd,
			const struct net_addr *peer,
			const struct net_addr *local, void *context)
{
	struct imap_worker *iw = worker_state;
	struct imap_session *s = xcalloc(1, sizeof(*s));
	struct event_base *base = net_worker_base(worker);
	bool implicit_tls = context != NULL && *(const bool *)context;
	(void)local;

	s->iw = iw;
	s->cfg = config_ref();
	/* answers are whole in our buffer: Nagle would only add a
	 * delayed-ACK stall between two writes of one answer */
	(void)net_set_nodelay(fd, true);
	s->conn = conn_new(base, fd, conn_cb, s);
	const struct imap_parser_limits limits = {
		.max_line_len = s->cfg->max_line_length,
		/* a literal also lives in the session's memory: the parser
		 * enforces both limits, for {n+} literals too */
		.max_literal_size =
		    s->cfg->max_append_size < s->cfg->session_memory_max / 2
			? s->cfg->max_append_size
			: s->cfg->session_memory_max / 2,
		.max_list_depth = 16,
		.max_args = 100000,
		.allow_8bit_quoted = true,
	};
	s->parser = imap_parser_new(&limits);
	s->out = buf_new(4096, IMAP_OUT_MAX);
	s->idle_timer = net_timer_new(base, idle_timer_cb, s);
	s->delay_timer = net_timer_new(base, delay_timer_cb, s);
	s->free_timer = net_timer_new(base, session_free_cb, s);
	s->notify_timer = net_timer_new(base, notify_timer_cb, s);
	net_addr_ip_str(peer, s->ip, sizeof(s->ip));
	s->trusted = config_nets_match(&s->cfg->trusted, &peer->u.sa);
	log_session_id_new(s->session_id);
	log_ctx_init(&s->log);
	log_ctx_set_rip(&s->log, &peer->u.sa);
	log_ctx_set_session(&s->log, s->session_id);
	s->next = iw->sessions;
	if (iw->sessions != NULL)
		iw->sessions->prev = s;
	iw->sessions = s;
	iw->count++;
	log_ctx_debug(&s->log, "imap: connected");
	if (s->cfg->idle_timeout_msecs > 0)
		net_timer_start(s->idle_timer,
				(unsigned int)s->cfg->idle_timeout_msecs,
				false);
	if (implicit_tls && server_tls != NULL) {
		if (start_tls(s))
			session_pump(s);
		return;
	}
	greet(s);
	session_pump(s);
}

/* ---- worker hooks -------------------------------------------------------- */

void imap_server_worker_init(struct net_worker *worker)
{
	struct imap_worker *iw = xcalloc(1, sizeof(*iw));

	iw->worker = worker;
	worker_state = iw;
}

void imap_server_worker_stopping(struct net_worker *worker)
{
	struct imap_worker *iw = worker_state;
	(void)worker;

	if (iw == NULL)
		return;
	/* nothing an IMAP session holds is lost by closing it now: every
	 * change is on disk when its tagged OK is sent */
	iw->draining = true;
	for (struct imap_session *s = iw->sessions; s != NULL; s = s->next) {
		if (s->state == IMAP_STATE_CLOSING)
			continue;
		/* no BYE in the middle of an answer (it would land inside
		 * a literal): such a session just closes */
		if (s->busy == 0 && s->fetch == NULL && s->out->len == 0) {
			imap_out(s, "* BYE Server shutting down.\r\n");
			(void)conn_write(s->conn, s->out->data, s->out->len);
		}
		session_close(s, "Server shutting down");
	}
}

void imap_server_worker_deinit(struct net_worker *worker)
{
	struct imap_worker *iw = worker_state;
	(void)worker;

	if (iw == NULL)
		return;
	while (iw->sessions != NULL) {
		struct imap_session *s = iw->sessions;
		/* the loop has ended: a job's done callback will not run, but
		 * its pool thread may still be in the session */
		io_pool_job_wait(&s->job_running);
		s->busy = BUSY_NONE;
		if (s->state != IMAP_STATE_CLOSING)
			session_close(s, "Server shutting down");
		session_free_cb(s);
	}
	free(iw);
	worker_state = NULL;
}

unsigned int imap_server_worker_kick(struct net_worker *worker,
				     const char *user)
{
	struct imap_worker *iw = worker_state;
	unsigned int n = 0;
	(void)worker;

	if (iw == NULL)
		return 0;
	for (struct imap_session *s = iw->sessions; s != NULL; s = s->next) {
		if (s->state == IMAP_STATE_CLOSING || s->user == NULL ||
		    strcmp(s->user, user) != 0)
			continue;
		if (s->busy == 0 && s->fetch == NULL && s->out->len == 0) {
			imap_out(s, "* BYE Disconnected by the "
				    "administrator.\r\n");
			(void)conn_write(s->conn, s->out->data, s->out->len);
		}
		session_close(s, "Kicked by the administrator");
		n++;
	}
	return n;
}
