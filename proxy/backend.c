/*
 * Connecting a logged-in client to its backend: pick the candidates (the
 * ring's ranking of the user, or the host= the passdb pinned), connect with
 * a timeout, fall back to the next candidate when a backend refuses or
 * does not answer, then hand the connection to the protocol's dialogue
 * (imap_backend.c, pop3_backend.c) line by line.
 */
#include "proxy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/ssl.h>

#include "directing.h"
#include "health.h"
#include "str.h"
#include "tls.h"
#include "xmalloc.h"

/* Backend lines during login: capability lines can be long, but not
 * unbounded. */
#define BACKEND_INPUT_MAX (64 * 1024)
#define BACKEND_OUTPUT_MAX (64 * 1024)

static void backend_connect_next(struct backend_login *bl);
static void backend_fill_candidates(struct backend_login *bl,
				    const char *exclude);
static void backend_conn_event(struct conn *conn, enum conn_event ev,
			       void *context);

static uint16_t backend_port(const struct client *c,
			     const struct backend_settings *bs)
{
	return (uint16_t)(c->listener->protocol == LISTENER_POP3 ?
			  bs->pop3_port : bs->imap_port);
}

static void backend_log_ctx(const struct backend_login *bl,
			    struct log_ctx *ctx)
{
	client_log_ctx(bl->client, ctx);
	log_ctx_set_backend(ctx, bl->backend_name);
}

static void backend_close_conn(struct backend_login *bl)
{
	conn_free(&bl->conn);
	bl->connected = false;
	bl->tls_pending = false;
	bl->failed = false;
	bl->proto_step = 0;
	xfree(&bl->capability);
	if (bl->input != NULL)
		buf_reset(bl->input);
	if (bl->output != NULL) {
		/* it may hold credentials for the previous backend */
		str_wipe(bl->output->data, bl->output->len);
		buf_reset(bl->output);
	}
}

void backend_login_free(struct backend_login **blp)
{
	struct backend_login *bl = *blp;

	if (bl == NULL)
		return;
	*blp = NULL;
	directing_lookup_cancel(&bl->lookup);
	conn_free(&bl->conn);
	net_timer_free(&bl->timer);
	buf_free(&bl->input);
	buf_free_secret(&bl->output);
	xfree(&bl->capability);
	free(bl);
}

void backend_login_fail(struct backend_login *bl, const char *resp_code,
			const char *text, const char *log_reason)
{
	struct client *c = bl->client;
	struct log_ctx ctx;

	backend_log_ctx(bl, &ctx);
	log_ctx_warnx(&ctx, "proxy: backend login failed: %s", log_reason);
	c->bl = NULL;
	backend_login_free(&bl);
	client_backend_failed(c, resp_code, text);
}

void backend_login_retry(struct backend_login *bl, const char *log_reason)
{
	struct log_ctx ctx;
	backend_log_ctx(bl, &ctx);
	if (bl->candidate_idx < bl->candidate_count)
		log_ctx_warnx(&ctx, "proxy: %s; trying the next backend", log_reason);
	else
		log_ctx_warnx(&ctx, "proxy: %s", log_reason);
	backend_close_conn(bl);
	backend_connect_next(bl);
}

static void backend_timeout(void *context)
{
	struct backend_login *bl = context;

	if (!bl->connected) {
		health_passive_failure(bl->backend->set->name);
		backend_login_retry(bl, "connect timed out");
		return;
	}
	backend_login_fail(bl, "UNAVAILABLE", "Account is temporarily unavailable.",
			   "login timed out");
}

static const struct net_addr *next_source_ip(const struct client *c)
{
	const struct proxy_config *cfg = c->cfg;
	if (cfg->source_ip_count == 0)
		return NULL;
	unsigned int i = atomic_fetch_add(&proxy.source_ip_next, 1);
	return &cfg->source_ips[i % cfg->source_ip_count];
}

static void backend_connect_next(struct backend_login *bl)
{
	struct client *c = bl->client;
	char err[NET_ERROR_MAX];

	while (bl->candidate_idx < bl->candidate_count) {
		const struct proxy_backend *be =
			&c->cfg->backends[bl->candidate[bl->candidate_idx++]];
		bl->backend = be;
		str_copy(str_cstr(be->set->name), bl->backend_name,
			 sizeof(bl->backend_name));
		if (be->unresolved) {
			/* a DNS name without an answer yet (discovery.c) */
			struct log_ctx ctx;
			backend_log_ctx(bl, &ctx);
			log_ctx_warnx(&ctx, "proxy: backend %s: its host name is not "
				      "resolved yet%s", be->set->name,
				      bl->candidate_idx < bl->candidate_count ?
				      "; trying the next backend" : "");
			continue;
		}
		bl->addr = be->addr;
		net_addr_set_port(&bl->addr, backend_port(c, be->set));
		if (bl->pinned && c->pinned_port != 0)
			net_addr_set_port(&bl->addr, c->pinned_port);
		int fd = net_connect(&bl->addr, next_source_ip(c), err, sizeof(err));
		if (fd < 0) {
			struct log_ctx ctx;
			backend_log_ctx(bl, &ctx);
			log_ctx_warnx(&ctx, "proxy: %s%s", err,
				      bl->candidate_idx < bl->candidate_count ?
				      "; trying the next backend" : "");
			continue;
		}
		bl->conn = conn_new(c->worker->base, fd, backend_conn_event, bl);
		conn_want(bl->conn, false, true);
		net_timer_start(bl->timer,
				(unsigned int)c->cfg->set.backend_connect_timeout_msecs,
				false);
		return;
	}
	/* The mapped backend refuses connections. If the user has no open
	 * session anywhere, I1 allows placing them anew (once). */
	if (bl->mapped && !bl->rerouted && bl->backend != NULL &&
	    directing_unmap_idle(c->director_key, bl->backend->set->name)) {
		char failed[DIRECTOR_NAME_MAX];
		str_copy(str_cstr(bl->backend->set->name), failed, sizeof(failed));
		bl->rerouted = true;
		backend_fill_candidates(bl, failed);
		if (bl->candidate_count > 0) {
			backend_connect_next(bl);
			return;
		}
	}
	backend_login_fail(bl, "UNAVAILABLE", "Account is temporarily unavailable.",
			   "no backend could be reached");
}

/* Candidates from the director: the user's mapping, or the placement
 * ranking; only backends of this config that serve the protocol. */
static void backend_fill_candidates(struct backend_login *bl,
				    const char *exclude)
{
	struct client *c = bl->client;
	const struct proxy_config *cfg = c->cfg;
	char names[8][DIRECTOR_NAME_MAX];
	bool mapped = false;
	size_t n = directing_route(c->director_key, c->tag, names, 8, &mapped);

	bl->mapped = mapped;
	bl->candidate_count = 0;
	bl->candidate_idx = 0;
	for (size_t i = 0; i < n; i++) {
		if (exclude != NULL && strcmp(names[i], exclude) == 0)
			continue;
		for (size_t j = 0; j < cfg->backend_count; j++) {
			const struct backend_settings *bs = cfg->backends[j].set;
			if (strcmp(bs->name, names[i]) == 0 && backend_port(c, bs) != 0) {
				bl->candidate[bl->candidate_count++] = (uint32_t)j;
				break;
			}
		}
	}
}

/* Candidates from the director (its cache holds the ring's answer by
 * now), then the first connect. */
static void backend_route(struct backend_login *bl)
{
	backend_fill_candidates(bl, NULL);
	if (bl->candidate_count == 0) {
		backend_login_fail(bl, "UNAVAILABLE", "Account is temporarily unavailable.",
				   "no backend available for the user");
		return;
	}
	backend_connect_next(bl);
}

static void backend_lookup_done(enum directing_lookup_result result, void *ctx)
{
	struct backend_login *bl = ctx;

	bl->lookup = NULL;
	switch (result) {
	case DIRECTING_LOOKUP_OK:
		bl->ring_routed = true;
		backend_route(bl);
		return;
	case DIRECTING_LOOKUP_DEGRADED:
		backend_route(bl);
		return;
	case DIRECTING_LOOKUP_NONE:
		backend_login_fail(bl, "UNAVAILABLE", "Account is temporarily unavailable.",
				   "no backend available for the user");
		return;
	case DIRECTING_LOOKUP_BUSY:
		backend_login_fail(bl, "UNAVAILABLE", "Account is temporarily unavailable.",
				   "the user is being moved and the move did not "
				   "finish in time");
		return;
	}
}

void backend_login_start(struct client *c)
{
	struct backend_login *bl = xcalloc(1, sizeof(*bl));
	const struct proxy_config *cfg = c->cfg;

	bl->client = c;
	c->bl = bl;
	bl->input = buf_new(1024, BACKEND_INPUT_MAX);
	bl->output = buf_new_secret(512, BACKEND_OUTPUT_MAX);
	bl->timer = net_timer_new(c->worker->base, backend_timeout, bl);

	if (c->pinned_host != NULL) {
		/* host= from the passdb bypasses the ring: it must name a
		 * configured backend (by name or address), so its TLS and
		 * login settings are known. */
		struct net_addr want;
		const char *error;
		bool want_ok = net_addr_parse(c->pinned_host,
					      NET_ADDR_PORT_OPTIONAL, &want,
					      &error) == 0;
		for (size_t i = 0; i < cfg->backend_count; i++) {
			if (strcmp(cfg->backends[i].set->name, c->pinned_host) == 0 ||
			    (want_ok && !cfg->backends[i].unresolved &&
			     net_addr_ip_eq(&cfg->backends[i].addr, &want))) {
				bl->candidate[0] = (uint32_t)i;
				bl->candidate_count = 1;
				break;
			}
		}
		bl->pinned = true;
		if (bl->candidate_count == 0) {
			char reason[300], safe[128];
			str_sanitize(str_cstr(c->pinned_host), safe, sizeof(safe));
			str_printf(reason, sizeof(reason),
				   "host=%s from the passdb is not a configured backend",
				   safe);
			backend_login_fail(bl, "UNAVAILABLE",
					   "Account is temporarily unavailable.",
					   reason);
			return;
		}
		backend_connect_next(bl);
		return;
	}
	bl->lookup = directing_lookup(c->worker->base, c->director_key, c->tag,
				      backend_lookup_done, bl);
	if (bl->lookup == NULL)
		backend_route(bl);
}

/* ---- I/O --------------------------------------------------------------- */

/* Acts on a failure recorded by backend_flush. Returns true when the
 * login is over (bl was freed). */
static bool backend_check_failed(struct backend_login *bl)
{
	if (!bl->failed)
		return false;
	backend_login_fail(bl, "UNAVAILABLE", "Account is temporarily unavailable.",
			   bl->fail_reason);
	return true;
}

static void backend_flush(struct backend_login *bl)
{
	while (!bl->failed && bl->output->len > 0 && !conn_in_handshake(bl->conn)) {
		ssize_t n = conn_write(bl->conn, bl->output->data, bl->output->len);
		if (n == CONN_AGAIN)
			break;
		if (n == CONN_FAILED) {
			bl->failed = true;
			str_printf(bl->fail_reason, sizeof(bl->fail_reason),
				   "write failed: %s", conn_error(bl->conn));
			conn_want(bl->conn, false, false);
			return;
		}
		/* credentials pass through this buffer: wipe what was sent */
		str_wipe(bl->output->data, (size_t)n);
		buf_consume(bl->output, (size_t)n);
	}
	if (!bl->failed && bl->conn != NULL && !conn_in_handshake(bl->conn))
		conn_want(bl->conn, true, bl->output->len > 0);
}

int backend_send(struct backend_login *bl, const void *data, size_t len)
{
	if (bl->failed)
		return -1;
	if (buf_append(bl->output, data, len) < 0) {
		bl->failed = true;
		str_printf(bl->fail_reason, sizeof(bl->fail_reason),
			   "output to the backend over its limit");
		return -1;
	}
	backend_flush(bl);
	return bl->failed ? -1 : 0;
}

int backend_printf(struct backend_login *bl, const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		return -1;
	return backend_send(bl, line, (size_t)n);
}

static SSL *backend_new_ssl(struct backend_login *bl)
{
	char err[TLS_ERROR_MAX];
	const struct backend_settings *bs = bl->backend->set;
	const char *host = bs->ssl_host[0] != '\0' ? bs->ssl_host : bs->host;
	SSL *ssl;

	if (bl->backend->ssl_ctx == NULL)
		return NULL;
	ssl = tls_client_ssl_new(bl->backend->ssl_ctx, host, err, sizeof(err));
	if (ssl == NULL) {
		struct log_ctx ctx;
		backend_log_ctx(bl, &ctx);
		log_ctx_error(&ctx, "proxy: TLS setup failed: %s", err);
	}
	return ssl;
}

void backend_start_tls(struct backend_login *bl)
{
	/* Plaintext bytes after the STARTTLS answer were never protected:
	 * they must not be taken as the first bytes of the TLS session
	 * (the STARTTLS injection attack, CVE-2011-0411 style). */
	buf_reset(bl->input);
	SSL *ssl = backend_new_ssl(bl);
	if (ssl == NULL || conn_start_tls(bl->conn, ssl, false) < 0) {
		backend_login_fail(bl, "UNAVAILABLE", "Account is temporarily unavailable.",
				   "TLS setup failed");
		return;
	}
	bl->tls_pending = true;
}

void backend_login_done(struct backend_login *bl)
{
	net_timer_stop(bl->timer);
	client_backend_ready(bl->client, bl);
}

/* Feeds complete lines to the protocol; stops when the login is over (the
 * rest of the input then belongs to the relay). */
static void backend_process_lines(struct backend_login *bl)
{
	struct client *c = bl->client;

	while (c->bl == bl && bl->input->len > 0) {
		struct str all = buf_str(bl->input);
		ptrdiff_t lf = str_index(all, '\n');
		if (lf < 0) {
			if (buf_room(bl->input) == 0)
				backend_login_fail(bl, "UNAVAILABLE",
						   "Account is temporarily unavailable.",
						   "backend sent an over-long line");
			return;
		}
		size_t len = (size_t)lf;
		if (len > 0 && all.p[len - 1] == '\r')
			len--;
		/* copy: the protocol may send, and sending may not move the
		 * input, but a callback may free bl */
		char line[4096];
		struct str l = str_from(all.p, len < sizeof(line) ? len : sizeof(line));
		memcpy(line, l.p, l.len);
		buf_consume(bl->input, (size_t)lf + 1);
		struct conn *conn_before = bl->conn;
		c->proto->backend_line(bl, str_from(line, l.len));
		if (c->bl != bl || c->state != CLIENT_STATE_BACKEND)
			return;
		if (backend_check_failed(bl))
			return;
		/* a retry replaced the connection: its lines start anew */
		if (bl->conn != conn_before)
			return;
	}
}

static void backend_read(struct backend_login *bl)
{
	struct client *c = bl->client;

	for (;;) {
		uint8_t tmp[4096];
		size_t room = buf_room(bl->input);
		if (room == 0)
			break;
		ssize_t n = conn_read(bl->conn, tmp, room < sizeof(tmp) ? room : sizeof(tmp));
		if (n == CONN_AGAIN)
			break;
		if (n == CONN_EOF || n == CONN_FAILED) {
			char reason[200];
			str_printf(reason, sizeof(reason), "backend closed the connection%s%s",
				   n == CONN_FAILED ? ": " : "",
				   n == CONN_FAILED ? conn_error(bl->conn) : "");
			if (!bl->pinned && bl->input->len == 0 && bl->proto_step == 0) {
				/* nothing said yet, not even a greeting */
				backend_login_retry(bl, reason);
				return;
			}
			backend_login_fail(bl, "UNAVAILABLE",
					   "Account is temporarily unavailable.", reason);
			return;
		}
		struct conn *conn_before = bl->conn;
		buf_append(bl->input, tmp, (size_t)n);
		backend_process_lines(bl);
		if (c->bl != bl || c->state != CLIENT_STATE_BACKEND ||
		    bl->conn != conn_before)
			return;
	}
}

static void backend_connected(struct backend_login *bl)
{
	struct client *c = bl->client;
	int res = net_connect_result(conn_fd(bl->conn));

	if (res == 0)
		return; /* still in progress */
	if (res < 0) {
		char reason[200];
		char addr[NET_ADDR_STR_MAX];
		str_printf(reason, sizeof(reason), "connect(%s) failed: %s",
			   net_addr_str(&bl->addr, addr, sizeof(addr)), strerror(errno));
		health_passive_failure(bl->backend->set->name);
		backend_login_retry(bl, reason);
		return;
	}
	bl->connected = true;
	net_set_nodelay(conn_fd(bl->conn), true);
	net_timer_start(bl->timer,
			(unsigned int)c->cfg->set.backend_login_timeout_msecs, false);
	c->proto->backend_start(bl);
	if (c->bl != bl || backend_check_failed(bl))
		return;
	if (bl->backend->set->ssl == BACKEND_SSL_YES) {
		SSL *ssl = backend_new_ssl(bl);
		if (ssl == NULL || conn_start_tls(bl->conn, ssl, false) < 0) {
			backend_login_fail(bl, "UNAVAILABLE",
					   "Account is temporarily unavailable.",
					   "TLS setup failed");
			return;
		}
		return;
	}
	conn_want(bl->conn, true, bl->output->len > 0);
}

static void backend_conn_event(struct conn *conn, enum conn_event ev,
			       void *context)
{
	struct backend_login *bl = context;
	struct client *c = bl->client;
	(void)conn;

	switch (ev) {
	case CONN_EV_WRITABLE:
		if (!bl->connected) {
			backend_connected(bl);
			return;
		}
		backend_flush(bl);
		backend_check_failed(bl);
		return;
	case CONN_EV_READABLE:
		backend_read(bl);
		return;
	case CONN_EV_TLS_READY:
		if (bl->tls_pending) {
			bl->tls_pending = false;
			conn_want(bl->conn, true, bl->output->len > 0);
			c->proto->backend_tls_ready(bl);
			if (c->bl == bl)
				backend_check_failed(bl);
			return;
		}
		conn_want(bl->conn, true, bl->output->len > 0);
		return;
	case CONN_EV_ERROR: {
		/* no credentials were sent yet: another backend may do */
		char reason[256];
		str_printf(reason, sizeof(reason), "TLS to the backend failed: %s",
			   conn_error(bl->conn));
		backend_login_retry(bl, reason);
		return;
	}
	}
}
