#include "proxy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "directing.h"
#include "lmtp.h"
#include "proxy_protocol.h"
#include "str.h"
#include "tls.h"
#include "xmalloc.h"

/* Pre-login output is small (greetings, capabilities, short answers): a
 * client that does not read it is dropped rather than buffered. */
#define CLIENT_OUTPUT_MAX (64 * 1024)
/* A closing session whose client does not read its last answer goes
 * after this, so it cannot hold its slot and per-IP count forever. */
#define CLIENT_CLOSE_TIMEOUT_MSECS 5000

const char *const client_state_names[CLIENT_STATE_COUNT] = {
	[CLIENT_STATE_PROXY_HEADER] = "proxy-header",
	[CLIENT_STATE_TLS_HANDSHAKE] = "tls-handshake",
	[CLIENT_STATE_PRELOGIN] = "prelogin",
	[CLIENT_STATE_AUTH] = "auth",
	[CLIENT_STATE_AUTH_DELAY] = "auth-delay",
	[CLIENT_STATE_BACKEND] = "backend",
	[CLIENT_STATE_RELAY] = "relay",
	[CLIENT_STATE_CLOSING] = "closing",
};

static void client_conn_event(struct conn *conn, enum conn_event ev,
			      void *context);
static void client_update_want(struct client *c);
static void client_flush(struct client *c);

static struct log_ratelimit reject_log_rl = LOG_RATELIMIT_INIT(1000, 10);

void client_log_ctx(const struct client *c, struct log_ctx *ctx)
{
	log_ctx_init(ctx);
	log_ctx_set_session(ctx, c->session_id);
	log_ctx_set_rip(ctx, &c->rip.u.sa);
	if (c->user != NULL)
		log_ctx_set_user(ctx, str_cstr(c->user));
	else if (c->login.user != NULL)
		log_ctx_set_user(ctx, buf_str(c->login.user));
	else if (c->last_user != NULL)
		log_ctx_set_user(ctx, str_cstr(c->last_user));
	if (c->backend != NULL)
		log_ctx_set_backend(ctx, c->backend->set->name);
}

void client_set_state(struct client *c, enum client_state state)
{
	if (log_level_enabled(LOG_LEVEL_DEBUG)) {
		struct log_ctx ctx;
		client_log_ctx(c, &ctx);
		log_ctx_debug(&ctx, "state %s -> %s",
			      client_state_names[c->state],
			      client_state_names[state]);
	}
	c->state = state;
	client_update_want(c);
}

bool client_is_secured(const struct client *c)
{
	return c->tls || c->trusted || !c->cfg->set.disable_plaintext_auth;
}

/* ---- output ---------------------------------------------------------- */

int client_send(struct client *c, const void *data, size_t len)
{
	if (c->destroyed || c->output == NULL)
		return -1;
	if (buf_append(c->output, data, len) < 0) {
		client_destroy(c, "Disconnected: client does not read its output");
		return -1;
	}
	client_flush(c);
	return 0;
}

int client_send_str(struct client *c, const char *s)
{
	return client_send(c, s, strlen(s));
}

int client_printf(struct client *c, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		return -1;
	return client_send(c, line, (size_t)n);
}

/* Writes what it can of c->output. */
static void client_flush(struct client *c)
{
	while (c->output != NULL && c->output->len > 0) {
		if (conn_in_handshake(c->conn))
			break;
		ssize_t n = conn_write(c->conn, c->output->data, c->output->len);
		if (n == CONN_AGAIN)
			break;
		if (n == CONN_FAILED) {
			client_destroy(c, "Disconnected: write failed");
			return;
		}
		buf_consume(c->output, (size_t)n);
	}
	if (c->output != NULL && c->output->len == 0) {
		if (c->closing_after_output) {
			client_destroy(c, c->close_reason);
			return;
		}
		if (c->state == CLIENT_STATE_TLS_HANDSHAKE &&
		    !conn_in_handshake(c->conn) && !conn_is_tls(c->conn)) {
			/* STARTTLS answer is out: now the handshake */
			char err[TLS_ERROR_MAX] = "";
			if (tls_server_start(proxy.tls, c->conn, err,
					     sizeof(err)) < 0) {
				struct log_ctx ctx;
				client_log_ctx(c, &ctx);
				log_ctx_error(&ctx, "STARTTLS failed: %s", err);
				client_destroy(c, "Disconnected: TLS initialization failed");
				return;
			}
		}
	}
	client_update_want(c);
}

void client_close_after_output(struct client *c, const char *reason)
{
	str_printf(c->close_reason, sizeof(c->close_reason), "%s", reason);
	c->closing_after_output = true;
	/* nothing may carry on towards a login now */
	if (c->auth_req != NULL)
		auth_request_cancel(&c->auth_req);
	backend_login_free(&c->bl);
	client_set_state(c, CLIENT_STATE_CLOSING);
	net_timer_start(c->timer, CLIENT_CLOSE_TIMEOUT_MSECS, false);
	client_flush(c);
}

/* ---- interest in events ---------------------------------------------- */

static void client_update_want(struct client *c)
{
	bool rd = false;
	bool wr = c->output != NULL && c->output->len > 0;

	if (c->destroyed || c->conn == NULL || c->state == CLIENT_STATE_RELAY)
		return;
	switch (c->state) {
	case CLIENT_STATE_PROXY_HEADER:
	case CLIENT_STATE_PRELOGIN:
		/* stop reading while the client does not read our answers */
		rd = !wr;
		break;
	case CLIENT_STATE_TLS_HANDSHAKE:
		/* the conn drives the handshake itself */
		break;
	default:
		/* auth, delay, backend login: pipelined commands wait in the
		 * socket, so the client cannot make us buffer them */
		break;
	}
	conn_want(c->conn, rd, wr);
}

/* ---- timers ------------------------------------------------------------ */

static void client_timeout(void *context)
{
	struct client *c = context;

	switch (c->state) {
	case CLIENT_STATE_AUTH_DELAY:
		c->proto->login_failed(c, c->fail_code, c->fail_resp_code,
				       c->fail_text);
		if (c->destroyed || c->state == CLIENT_STATE_CLOSING)
			return;
		client_set_state(c, CLIENT_STATE_PRELOGIN);
		/* back to the login timeout, from where the client was */
		{
			uint64_t now = net_monotonic_msecs();
			uint64_t end = c->connected_msecs +
				       c->cfg->set.login_timeout_msecs;
			net_timer_start(c->timer,
					end > now ? (unsigned int)(end - now) : 1,
					false);
		}
		client_input_resume(c);
		return;
	case CLIENT_STATE_CLOSING:
		client_destroy(c, c->close_reason[0] != '\0' ? c->close_reason :
			       "Disconnected: client did not read its last answer");
		return;
	case CLIENT_STATE_RELAY: {
		if (c->kick_pending) {
			client_destroy(c, c->close_reason);
			return;
		}
		/* one timer, re-armed lazily: relaying never touches it */
		uint64_t idle = c->cfg->set.idle_timeout_msecs;
		uint64_t quiet = net_monotonic_msecs() - c->last_io_msecs;
		if (idle == 0)
			return;
		if (quiet >= idle) {
			client_kick(c, "Disconnected for inactivity.");
			return;
		}
		net_timer_start(c->timer, (unsigned int)(idle - quiet), false);
		return;
	}
	default:
		client_kick(c, "Disconnected for inactivity during authentication.");
		return;
	}
}

/* ---- PROXY protocol header --------------------------------------------- */

static void client_after_header(struct client *c);

static void client_read_proxy_header(struct client *c)
{
	uint8_t peek[PROXY_PROTO_MAX_HEADER];
	size_t have = c->input->len;
	struct proxy_proto_info info;
	size_t consumed;
	const char *error;

	memcpy(peek, c->input->data, have);
	ssize_t n = recv(conn_fd(c->conn), peek + have, sizeof(peek) - have,
			 MSG_PEEK);
	if (n == 0) {
		client_destroy(c, "Disconnected: EOF before the PROXY header");
		return;
	}
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		client_destroy(c, "Disconnected: read failed");
		return;
	}
	size_t total = have + (size_t)n;
	enum proxy_proto_result r =
		proxy_proto_parse(peek, total, &info, &consumed, &error);
	if (r == PROXY_PROTO_ERROR) {
		struct log_ctx ctx;
		client_log_ctx(c, &ctx);
		log_emit(LOG_LEVEL_WARNING, &ctx, &reject_log_rl,
			 "haproxy: invalid PROXY header: %s", error);
		client_destroy(c, "Disconnected: invalid PROXY header");
		return;
	}
	/* NEED_MORE: everything available is header, so it is safe to
	 * consume all of it. DONE: consume exactly the header, leaving the
	 * client's own first bytes (maybe a TLS ClientHello) unread. */
	size_t take = r == PROXY_PROTO_DONE ? consumed - have : (size_t)n;
	uint8_t sink[PROXY_PROTO_MAX_HEADER];
	ssize_t got = recv(conn_fd(c->conn), sink, take, 0);
	if (got != (ssize_t)take) {
		client_destroy(c, "Disconnected: read failed");
		return;
	}
	if (r == PROXY_PROTO_NEED_MORE) {
		buf_append(c->input, sink, take);
		return;
	}
	buf_reset(c->input);
	if (info.has_addresses) {
		net_addr_from_sockaddr(&c->rip, (struct sockaddr *)&info.src,
				       info.addrlen);
		net_addr_from_sockaddr(&c->lip, (struct sockaddr *)&info.dst,
				       info.addrlen);
	}
	client_after_header(c);
}

/* ---- input ------------------------------------------------------------- */

void client_input_consume(struct client *c, size_t n)
{
	buf_consume(c->input, n);
}

void client_input_resume(struct client *c)
{
	if (c->destroyed)
		return;
	client_update_want(c);
	if (c->state == CLIENT_STATE_PRELOGIN && c->input->len > 0)
		c->proto->input(c);
}

static void client_read(struct client *c)
{
	for (;;) {
		size_t room = buf_room(c->input);
		if (room == 0) {
			/* The protocol parser consumes as it goes, so a full
			 * buffer means one unparseable blob. */
			client_destroy(c, "Disconnected: input buffer full");
			return;
		}
		uint8_t tmp[4096];
		ssize_t n = conn_read(c->conn, tmp,
				      room < sizeof(tmp) ? room : sizeof(tmp));
		if (n == CONN_AGAIN)
			break;
		if (n == CONN_EOF) {
			client_destroy(c, c->auth_attempts > 0 ?
				       "Disconnected: Connection closed (auth failed)" :
				       "Disconnected: Connection closed (no auth attempts)");
			return;
		}
		if (n == CONN_FAILED) {
			client_destroy(c, "Disconnected: read failed");
			return;
		}
		buf_append(c->input, tmp, (size_t)n);
		str_wipe(tmp, (size_t)n);
		c->proto->input(c);
		if (c->destroyed || c->state != CLIENT_STATE_PRELOGIN)
			return;
		if (c->output != NULL && c->output->len > 0)
			return; /* wait until the client reads our answers */
	}
}

static void client_conn_event(struct conn *conn, enum conn_event ev,
			      void *context)
{
	struct client *c = context;
	(void)conn;

	if (c->destroyed)
		return;
	switch (ev) {
	case CONN_EV_TLS_READY:
		c->tls = true;
		client_set_state(c, CLIENT_STATE_PRELOGIN);
		if (!c->greeted) {
			c->greeted = true;
			c->proto->greet(c);
		}
		client_update_want(c);
		break;
	case CONN_EV_ERROR: {
		struct log_ctx ctx;
		client_log_ctx(c, &ctx);
		log_emit(LOG_LEVEL_INFO, &ctx, &reject_log_rl,
			 "Disconnected: TLS handshaking failed: %s",
			 conn_error(c->conn));
		client_destroy(c, NULL);
		break;
	}
	case CONN_EV_WRITABLE:
		client_flush(c);
		break;
	case CONN_EV_READABLE:
		if (c->state == CLIENT_STATE_PROXY_HEADER)
			client_read_proxy_header(c);
		else if (c->state == CLIENT_STATE_PRELOGIN)
			client_read(c);
		break;
	}
}

/* ---- accept and the start of a session ---------------------------------- */

static void client_greet(struct client *c)
{
	c->greeted = true;
	client_set_state(c, CLIENT_STATE_PRELOGIN);
	c->proto->greet(c);
}

static void client_after_header(struct client *c)
{
	const struct proxy_settings *set = &c->cfg->set;

	c->trusted = config_nets_match(&set->trusted_networks, &c->rip.u.sa);
	if (!iplimit_acquire(proxy.iplimit, &c->rip,
			     (unsigned int)set->max_connections_per_ip)) {
		struct log_ctx ctx;
		client_log_ctx(c, &ctx);
		log_emit(LOG_LEVEL_WARNING, &ctx, &reject_log_rl,
			 "Disconnected: Too many connections from this IP "
			 "(max_connections_per_ip=%llu)",
			 (unsigned long long)set->max_connections_per_ip);
		struct buf *line = buf_new(128, 256);
		c->proto->bye_line(c, "Too many connections from your IP address.", line);
		(void)send(conn_fd(c->conn), line->data, line->len,
			   MSG_NOSIGNAL | MSG_DONTWAIT);
		buf_free(&line);
		client_destroy(c, NULL);
		return;
	}
	c->iplimit_held = true;
	if (c->listener->ssl) {
		char err[TLS_ERROR_MAX] = "";
		if (tls_server_start(proxy.tls, c->conn, err, sizeof(err)) < 0) {
			log_error("TLS initialization failed: %s", err);
			client_destroy(c, NULL);
			return;
		}
		client_set_state(c, CLIENT_STATE_TLS_HANDSHAKE);
		return;
	}
	client_greet(c);
}

void client_accept(struct net_worker *nw, int fd, const struct net_addr *peer,
		   const struct net_addr *local, void *context)
{
	struct proxy_worker *w = net_worker_get_data(nw);
	size_t listener_idx = (size_t)(uintptr_t)context;
	struct proxy_config *cfg = proxy_config_ref();

	/* a reply written in two pieces (LMTP's "250 ..." and its CRLF,
	 * relayed answers) must not wait for the client's delayed ACK */
	(void)net_set_nodelay(fd, true);
	const struct listener_settings *l = &cfg->set.listeners[listener_idx];
	const struct client_protocol *proto =
		l->protocol == LISTENER_LMTP ? &lmtp_protocol :
		l->protocol == LISTENER_POP3 ? &pop3_protocol : &imap_protocol;

	unsigned int now = atomic_fetch_add(&proxy.connections, 1) + 1;
	if (now > cfg->set.max_connections || w->stopping) {
		atomic_fetch_sub(&proxy.connections, 1);
		log_emit(LOG_LEVEL_WARNING, NULL, &reject_log_rl,
			 "Connection refused: max_connections=%llu reached",
			 (unsigned long long)cfg->set.max_connections);
		struct client tmp = { .cfg = cfg };
		struct buf *line = buf_new(128, 256);
		proto->bye_line(&tmp, "Server is busy, try again later.", line);
		(void)send(fd, line->data, line->len, MSG_NOSIGNAL | MSG_DONTWAIT);
		buf_free(&line);
		close(fd);
		proxy_config_unref(&cfg);
		return;
	}

	struct client *c = xcalloc(1, sizeof(*c) + proto->state_size);
	c->proto_state = proto->state_size > 0 ? (void *)(c + 1) : NULL;
	c->worker = w;
	c->cfg = cfg;
	c->listener = l;
	c->listener_idx = listener_idx;
	c->proto = proto;
	c->state = CLIENT_STATE_PRELOGIN;
	c->real_rip = *peer;
	c->rip = *peer;
	c->lip = *local;
	net_addr_normalize(&c->rip);
	net_addr_normalize(&c->real_rip);
	net_addr_normalize(&c->lip);
	log_session_id_new(c->session_id);
	c->connected_msecs = net_monotonic_msecs();
	c->last_io_msecs = c->connected_msecs;
	/* the input holds one command line plus literals at most */
	c->input = buf_new_secret(1024, cfg->set.max_line_length +
					cfg->set.max_literal_size + 64);
	c->output = buf_new(512, CLIENT_OUTPUT_MAX);
	c->conn = conn_new(w->base, fd, client_conn_event, c);
	c->timer = net_timer_new(w->base, client_timeout, c);
	net_timer_start(c->timer, (unsigned int)cfg->set.login_timeout_msecs,
			false);

	c->next = w->clients;
	if (w->clients != NULL)
		w->clients->prev = c;
	w->clients = c;
	w->client_count++;

	if (l->haproxy) {
		if (!config_nets_match(&cfg->set.haproxy_trusted_networks,
				       &peer->u.sa)) {
			struct log_ctx ctx;
			client_log_ctx(c, &ctx);
			log_emit(LOG_LEVEL_WARNING, &ctx, &reject_log_rl,
				 "haproxy: client not in haproxy_trusted_networks");
			client_destroy(c, NULL);
			return;
		}
		c->state = CLIENT_STATE_PROXY_HEADER;
		client_update_want(c);
		return;
	}
	client_after_header(c);
}

/* ---- STARTTLS ------------------------------------------------------------ */

void client_start_tls(struct client *c)
{
	/* The handshake starts in client_flush once the OK is written. */
	client_set_state(c, CLIENT_STATE_TLS_HANDSHAKE);
	/* Bytes the client sent after STARTTLS in plaintext must never be
	 * taken as if they came through TLS (CVE-2011-0411 style). */
	buf_reset(c->input);
	/* so is anything learnt before it (ID fields) */
	xfree(&c->id_fields);
	client_flush(c);
}

/* ---- authentication --------------------------------------------------- */

void client_login_clear(struct client *c)
{
	buf_free(&c->login.user);
	buf_free(&c->login.authzid);
	buf_free_secret(&c->login.password);
	c->login.method = NULL;
}

static void client_log_login_failure(struct client *c, const char *reason)
{
	struct log_ctx ctx;
	struct log_fields f;

	client_log_ctx(c, &ctx);
	log_fields_init(&f);
	if (c->login.method != NULL)
		log_field_atom(&f, "method", c->login.method);
	log_field_ip(&f, "lip", &c->lip.u.sa);
	log_field_atom(&f, "result", "failed");
	log_field_str(&f, "reason", reason);
	log_ctx_event(&ctx, LOG_LEVEL_INFO, "Login failed", &f);
}

static void client_fail_later(struct client *c, enum auth_result_code code,
			      const char *resp_code, const char *text,
			      uint32_t delay_ms)
{
	c->fail_code = code;
	c->fail_resp_code = resp_code;
	c->fail_text = text;
	client_login_clear(c);
	client_set_state(c, CLIENT_STATE_AUTH_DELAY);
	net_timer_start(c->timer, delay_ms > 0 ? delay_ms : 1, false);
}

static void client_auth_callback(const struct auth_result *result,
				 void *context)
{
	struct client *c = context;

	c->auth_req = NULL;
	switch (result->code) {
	case AUTH_RESULT_OK:
		break;
	case AUTH_RESULT_FAILED:
	case AUTH_RESULT_UNKNOWN_USER:
		atomic_fetch_add(&proxy.logins_failed, 1);
		client_log_login_failure(c, result->log_reason != NULL ?
					 result->log_reason :
					 auth_result_code_str(result->code));
		client_fail_later(c, result->code, "AUTHENTICATIONFAILED",
				  "Authentication failed.", result->delay_ms);
		return;
	case AUTH_RESULT_NOLOGIN:
		atomic_fetch_add(&proxy.logins_nologin, 1);
		client_log_login_failure(c, "nologin");
		/* Dovecot shows the passdb's reason= to the client, and
		 * otherwise nothing that tells the account exists */
		if (result->nologin_reason != NULL) {
			str_sanitize(str_cstr(result->nologin_reason), c->fail_text_buf,
				     sizeof(c->fail_text_buf));
			client_fail_later(c, result->code, "AUTHENTICATIONFAILED",
					  c->fail_text_buf, result->delay_ms);
		} else {
			client_fail_later(c, result->code, "AUTHENTICATIONFAILED",
					  "Authentication failed.", result->delay_ms);
		}
		return;
	case AUTH_RESULT_TEMPFAIL:
	default:
		atomic_fetch_add(&proxy.logins_tempfail, 1);
		client_log_login_failure(c, result->log_reason != NULL ?
					 result->log_reason : "tempfail");
		client_fail_later(c, AUTH_RESULT_TEMPFAIL, "UNAVAILABLE",
				  "Temporary authentication failure.",
				  result->delay_ms);
		return;
	}

	free(c->user);
	c->user = xstrdup(result->user);
	free(c->backend_user);
	c->backend_user = xstrdup(result->destuser != NULL ? result->destuser :
				  result->user);
	if (c->backend_pass != NULL) {
		str_wipe(c->backend_pass, strlen(c->backend_pass));
		free(c->backend_pass);
	}
	c->backend_pass = xstrdup(result->pass != NULL ? result->pass :
				  buf_cstr(c->login.password));
	free(c->pinned_host);
	c->pinned_host = result->host != NULL ? xstrdup(result->host) : NULL;
	struct str key = proxy_user_key(&c->cfg->set, c->user);
	free(c->director_key);
	c->director_key = xstrndup(key.p, key.len);
	free(c->tag);
	c->tag = result->director_tag != NULL ? xstrdup(result->director_tag) : NULL;
	c->pinned_port = result->port;
	c->rawlog = false;
	for (size_t i = 0; i < c->cfg->set.rawlog_users.count; i++) {
		if (strcmp(c->cfg->set.rawlog_users.items[i], c->user) == 0)
			c->rawlog = true;
	}
	/* Route with the newest configuration: a backend removed by a
	 * reload since this client connected must not get new sessions. */
	proxy_config_unref(&c->cfg);
	c->cfg = proxy_config_ref();
	c->listener = &c->cfg->set.listeners[c->listener_idx];
	client_set_state(c, CLIENT_STATE_BACKEND);
	/* backend.c bounds every step (connect per candidate, then login)
	 * with its own timer and always answers the client */
	net_timer_stop(c->timer);
	backend_login_start(c);
}

void client_auth_start(struct client *c)
{
	char ip[NET_ADDR_STR_MAX];
	struct auth_request_params params = {
		.user = buf_str(c->login.user),
		.authzid = c->login.authzid != NULL ? buf_str(c->login.authzid) :
						      STR_NULL,
		.password = buf_str(c->login.password),
		.service = c->proto->name,
		.client_ip = net_addr_ip_str(&c->rip, ip, sizeof(ip)),
		.session_id = c->session_id,
	};

	c->auth_attempts++;
	free(c->last_user);
	c->last_user = xstrndup((const char *)c->login.user->data,
				c->login.user->len);
	client_set_state(c, CLIENT_STATE_AUTH);
	c->auth_req = auth_request_new(proxy.auth, c->worker->base, &params,
				       client_auth_callback, c);
}

/* ---- backend results ------------------------------------------------------ */

void client_backend_failed(struct client *c, const char *resp_code,
			   const char *text)
{
	c->bl = NULL;
	c->backend = NULL;
	atomic_fetch_add(&proxy.logins_unavailable, 1);
	c->proto->login_failed(c, AUTH_RESULT_TEMPFAIL, resp_code, text);
	client_login_clear(c);
	if (c->destroyed || c->state == CLIENT_STATE_CLOSING)
		return;
	client_set_state(c, CLIENT_STATE_PRELOGIN);
	uint64_t now = net_monotonic_msecs();
	uint64_t end = c->connected_msecs + c->cfg->set.login_timeout_msecs;
	net_timer_start(c->timer, end > now ? (unsigned int)(end - now) : 1,
			false);
	client_input_resume(c);
}

static void client_log_login(struct client *c)
{
	atomic_fetch_add(&proxy.logins_ok, 1);
	struct log_ctx ctx;
	struct log_fields f;
	char addr[NET_ADDR_STR_MAX];

	client_log_ctx(c, &ctx);
	log_fields_init(&f);
	log_field_atom(&f, "method", c->login.method != NULL ? c->login.method : "PLAIN");
	log_field_ip(&f, "lip", &c->lip.u.sa);
	log_field_atom(&f, "backend_addr", net_addr_str(&c->bl->addr, addr, sizeof(addr)));
	if (c->tls)
		log_field_atom(&f, "tls", "yes");
	log_ctx_event(&ctx, LOG_LEVEL_INFO, "Login", &f);
}

void client_backend_ready(struct client *c, struct backend_login *bl)
{
	struct buf *to_backend;

	if (!bl->pinned) {
		if (!directing_session_begin(c->director_key, bl->backend->set->name,
					     bl->ring_routed)) {
			/* I1: meanwhile another session mapped the user to
			 * another backend; this one must not stay here. The
			 * client's retry goes to the mapping. */
			struct log_ctx ctx;
			client_log_ctx(c, &ctx);
			log_ctx_warnx(&ctx, "director: user was mapped elsewhere "
				      "during the login; not using %s",
				      bl->backend->set->name);
			c->bl = NULL;
			backend_login_free(&bl);
			client_backend_failed(c, "UNAVAILABLE",
					      "Account is temporarily unavailable.");
			return;
		}
		c->director_registered = true;
	}
	c->backend = bl->backend;
	client_log_login(c);
	c->proto->login_succeeded(c, bl);
	if (c->destroyed)
		return;
	client_login_clear(c);
	client_set_state(c, CLIENT_STATE_RELAY);
	/* pipelined client bytes after the login command go to the backend;
	 * backend bytes after its login answer follow our answer */
	to_backend = c->input;
	struct buf *to_client = buf_new(c->output->len + bl->input->len + 1,
					c->output->len + bl->input->len + 1);
	buf_append(to_client, c->output->data, c->output->len);
	buf_append(to_client, bl->input->data, bl->input->len);
	c->relay = relay_start(c, c->conn, bl->conn, to_client, to_backend);
	buf_free(&to_client);
	c->conn = NULL;
	bl->conn = NULL;
	backend_login_free(&c->bl);
	buf_free_secret(&c->input);
	buf_free(&c->output);
	if (c->backend_pass != NULL) {
		str_wipe(c->backend_pass, strlen(c->backend_pass));
		xfree(&c->backend_pass);
	}
	free(c->id_fields);
	c->id_fields = NULL;
	c->last_io_msecs = net_monotonic_msecs();
	if (c->cfg->set.idle_timeout_msecs > 0)
		net_timer_start(c->timer,
				(unsigned int)c->cfg->set.idle_timeout_msecs,
				false);
	else
		net_timer_stop(c->timer);
}

/* A delay in [0, max) so that a dead backend's clients come back spread
 * out instead of in one burst. */
static unsigned int disconnect_delay(const struct client *c)
{
	uint64_t max = c->cfg->set.max_disconnect_delay_msecs;
	if (max == 0)
		return 0;
	uint64_t r;
	arc4random_buf(&r, sizeof(r));
	return (unsigned int)(r % max);
}

static void client_close_later(struct client *c, const char *reason,
			       unsigned int delay)
{
	str_printf(c->close_reason, sizeof(c->close_reason), "%s", reason);
	c->kick_pending = true;
	relay_pause(c->relay);
	net_timer_start(c->timer, delay > 0 ? delay : 1, false);
}

void client_relay_finished(struct client *c, const char *reason,
			   bool backend_side)
{
	unsigned int delay = backend_side ? disconnect_delay(c) : 0;

	if (delay > 0) {
		client_close_later(c, reason, delay);
		return;
	}
	client_destroy(c, reason);
}

struct kick_request {
	const char *user;
	const char *const *keys; /* sorted director keys, or NULL */
	size_t key_count;
	const char *backend;
	const char *reason;
	bool spread;
	atomic_uint count;
};

static int cmp_cstr(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool kick_user_matches(const struct kick_request *k,
			      const struct client *c)
{
	if (k->keys != NULL)
		return c->director_key != NULL &&
		       bsearch(&c->director_key, k->keys, k->key_count,
			       sizeof(*k->keys), cmp_cstr) != NULL;
	if (k->user != NULL)
		return c->user != NULL && strcmp(c->user, k->user) == 0;
	return true;
}

static void kick_on_worker(struct net_worker *nw, void *context)
{
	struct proxy_worker *w = net_worker_get_data(nw);
	struct kick_request *k = context;
	struct client *c, *next;

	for (c = w->clients; c != NULL; c = next) {
		next = c->next;
		if (c->state == CLIENT_STATE_BACKEND && c->bl != NULL &&
		    c->bl->backend != NULL && k->backend != NULL &&
		    strcmp(c->bl->backend->set->name, k->backend) == 0 &&
		    kick_user_matches(k, c)) {
			/* mid-login: answer it now rather than let it land */
			atomic_fetch_add(&k->count, 1);
			backend_login_fail(c->bl, "UNAVAILABLE",
					   "Account is temporarily unavailable.",
					   k->reason);
			continue;
		}
		if (c->state != CLIENT_STATE_RELAY || c->kick_pending)
			continue;
		if (!kick_user_matches(k, c))
			continue;
		if (k->backend != NULL && (c->backend == NULL ||
					   strcmp(c->backend->set->name, k->backend) != 0))
			continue;
		atomic_fetch_add(&k->count, 1);
		unsigned int delay = k->spread ? disconnect_delay(c) : 0;
		if (delay > 0) {
			struct buf *line = buf_new(128, 512);
			c->proto->bye_line(c, k->reason, line);
			relay_close(c->relay, line);
			buf_free(&line);
			char why[128];
			str_printf(why, sizeof(why), "Disconnected: %s", k->reason);
			client_close_later(c, why, delay);
			continue;
		}
		client_kick(c, k->reason);
	}
}

unsigned int proxy_kick(const char *user, const char *backend,
			const char *reason, bool spread)
{
	struct kick_request k = { .user = user, .backend = backend,
				  .reason = reason, .spread = spread };
	net_workers_run_all_wait(proxy.workers, kick_on_worker, &k);
	return atomic_load(&k.count);
}

unsigned int proxy_kick_keys(const char *const *keys, size_t count,
			     const char *backend, const char *reason)
{
	const char **sorted = xcalloc(count + 1, sizeof(*sorted));
	memcpy(sorted, keys, count * sizeof(*keys));
	qsort(sorted, count, sizeof(*sorted), cmp_cstr);
	struct kick_request k = { .keys = sorted, .key_count = count,
				  .backend = backend, .reason = reason };
	net_workers_run_all_wait(proxy.workers, kick_on_worker, &k);
	free(sorted);
	return atomic_load(&k.count);
}

/* ---- closing --------------------------------------------------------------- */

void client_kick(struct client *c, const char *reason)
{
	struct buf *line = buf_new(128, 512);

	c->proto->bye_line(c, reason, line);
	if (c->state == CLIENT_STATE_RELAY && c->relay != NULL) {
		str_printf(c->close_reason, sizeof(c->close_reason),
			   "Disconnected: %s", reason);
		relay_close(c->relay, line);
		buf_free(&line);
		client_destroy(c, c->close_reason);
		return;
	}
	if (c->output != NULL && c->conn != NULL && !conn_in_handshake(c->conn)) {
		char why[128];
		str_printf(why, sizeof(why), "Disconnected: %s", reason);
		buf_append(c->output, line->data, line->len);
		buf_free(&line);
		client_close_after_output(c, why);
		return;
	}
	buf_free(&line);
	client_destroy(c, reason);
}

static void client_log_disconnect(struct client *c, const char *reason)
{
	struct log_ctx ctx;
	struct log_fields f;
	uint64_t now = net_monotonic_msecs();

	client_log_ctx(c, &ctx);
	log_fields_init(&f);
	if (c->state == CLIENT_STATE_RELAY && c->relay != NULL) {
		log_field_ip(&f, "lip", &c->lip.u.sa);
		log_field_atom(&f, "result", "ok");
		log_field_str(&f, "reason", reason);
		log_field_uint(&f, "duration", (now - c->connected_msecs) / 1000);
		log_field_uint(&f, "in", relay_bytes_in(c->relay));
		log_field_uint(&f, "out", relay_bytes_out(c->relay));
		log_ctx_event(&ctx, LOG_LEVEL_INFO, "Logout", &f);
		return;
	}
	log_field_ip(&f, "lip", &c->lip.u.sa);
	log_field_str(&f, "reason", reason);
	log_field_uint(&f, "auth_attempts", c->auth_attempts);
	log_field_uint(&f, "duration", (now - c->connected_msecs) / 1000);
	log_ctx_event(&ctx, LOG_LEVEL_INFO, "Disconnected", &f);
}

static void client_free_deferred(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	free(arg);
}

void client_destroy(struct client *c, const char *reason)
{
	struct proxy_worker *w = c->worker;

	if (c->destroyed)
		return;
	if (reason != NULL)
		client_log_disconnect(c, reason);
	c->destroyed = true;

	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		w->clients = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	w->client_count--;

	if (c->auth_req != NULL)
		auth_request_cancel(&c->auth_req);
	backend_login_free(&c->bl);
	relay_free(&c->relay);
	conn_free(&c->conn);
	net_timer_free(&c->timer);
	/* consumed login commands (passwords) may still sit in it */
	buf_free_secret(&c->input);
	buf_free(&c->output);
	client_login_clear(c);
	if (c->backend_pass != NULL) {
		str_wipe(c->backend_pass, strlen(c->backend_pass));
		xfree(&c->backend_pass);
	}
	if (c->proto->free != NULL)
		c->proto->free(c);
	xfree(&c->user);
	xfree(&c->last_user);
	xfree(&c->backend_user);
	xfree(&c->pinned_host);
	xfree(&c->id_fields);
	if (c->director_registered)
		directing_session_end(c->director_key, c->backend->set->name);
	xfree(&c->director_key);
	xfree(&c->tag);
	if (c->iplimit_held)
		iplimit_release(proxy.iplimit, &c->rip);
	atomic_fetch_sub(&proxy.connections, 1);
	proxy_config_unref(&c->cfg);
	/* Callers up the stack may still look at c->destroyed: free the
	 * struct from the loop, not here. */
	if (event_base_once(w->base, -1, EV_TIMEOUT, client_free_deferred, c,
			    NULL) < 0)
		free(c);
}
