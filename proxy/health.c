/*
 * Active health checks, run on the main thread's loop. Every
 * health_interval each backend gets one check: TCP connect, the greeting
 * ("* OK" for IMAP, "+OK" for POP3), then a polite LOGOUT/QUIT and its
 * answer, so backends log a normal logout and not thousands of aborted
 * connections a day. health_fall failed checks in a row take the backend
 * down through the director (its mappings go and its sessions are closed,
 * I4); health_rise good ones bring it back. With one proxy the quorum is
 * one. With the shared store (redis) each check result is this proxy's
 * vote, and the ring takes a backend down (or up) when a majority of the
 * live proxies see it failing (working): I3.
 *
 * A backend an admin took down (`mailring down`) is left alone: health
 * only brings back what health took down.
 */
#include "health.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <pthread.h>

#include "base64.h"
#include "buf.h"
#include "conn.h"
#include "directing.h"
#include "log.h"
#include "net.h"
#include "proxy.h"
#include "str.h"
#include "tls.h"
#include "xmalloc.h"

#define HEALTH_LINE_MAX 4096

enum probe_step {
	PROBE_CONNECTING = 0, /* waiting for the TCP handshake */
	PROBE_TLS,            /* ssl = yes: waiting for the TLS handshake */
	PROBE_GREETING,       /* waiting for the greeting line */
	PROBE_USER,           /* POP3 check login: sent USER */
	PROBE_LOGIN,          /* sent LOGIN / PASS of the check user */
	PROBE_LOGOUT,         /* sent LOGOUT/QUIT, waiting for the answer */
};

struct probe {
	struct backend_health *bh;
	struct conn *conn;
	struct net_timer *timer;
	enum probe_step step;
	bool pop3;
	bool login;           /* log in as health_user first */
	const struct proxy_backend *be; /* in cfg */
	struct proxy_config *cfg;       /* held: a reload must not free be */
	char user[256];
	char password[256];
	struct buf *input;
};

struct backend_health {
	char name[DIRECTOR_NAME_MAX];
	unsigned int fails;      /* failed checks in a row */
	unsigned int oks;        /* good checks in a row */
	bool down_by_health;     /* we took it down: we may bring it back */
	bool view_failing;       /* shared store: our vote (I3) */
	struct probe *probe;     /* the check under way, or NULL */
	char last_error[160];
};

static struct {
	struct event_base *base;
	struct net_timer *tick;
	struct backend_health *backends;
	size_t count;
} health;

static struct backend_health *health_find(const char *name)
{
	for (size_t i = 0; i < health.count; i++) {
		if (strcmp(health.backends[i].name, name) == 0)
			return &health.backends[i];
	}
	return NULL;
}

static void probe_free(struct probe **pp)
{
	struct probe *p = *pp;
	if (p == NULL)
		return;
	*pp = NULL;
	p->bh->probe = NULL;
	conn_free(&p->conn);
	net_timer_free(&p->timer);
	buf_free(&p->input);
	if (p->cfg != NULL)
		proxy_config_unref(&p->cfg);
	explicit_bzero(p->password, sizeof(p->password));
	free(p);
}

static void health_result(struct backend_health *bh, bool ok,
			  const char *error)
{
	struct director_backend_info info;
	struct proxy_config *cfg = proxy_config_ref();
	unsigned int rise = (unsigned int)cfg->set.health_rise;
	unsigned int fall = (unsigned int)cfg->set.health_fall;
	proxy_config_unref(&cfg);

	if (ok) {
		bh->oks++;
		bh->fails = 0;
	} else {
		bh->fails++;
		bh->oks = 0;
		str_printf(bh->last_error, sizeof(bh->last_error), "%s", error);
	}
	if (directing_shared()) {
		/* several proxies: this is one vote; the ring's quorum of
		 * live proxies decides (I3). Voted on every check, so a
		 * proxy that joins or a lost vote is made good at once. */
		if (!bh->view_failing && bh->fails >= fall) {
			log_warnx("health: backend %s fails here after %u checks: %s "
				  "(voting down)", bh->name, bh->fails, bh->last_error);
			bh->view_failing = true;
		} else if (bh->view_failing && bh->oks >= rise) {
			log_notice("health: backend %s works here again after %u "
				   "checks (voting up)", bh->name, bh->oks);
			bh->view_failing = false;
		}
		directing_health_vote(bh->name, bh->view_failing);
		return;
	}
	if (!directing_backend_info(bh->name, &info))
		return;
	if (!ok && info.state == DIRECTOR_BACKEND_UP && bh->fails >= fall) {
		log_warnx("health: backend %s is down after %u failed checks: %s",
			  bh->name, bh->fails, bh->last_error);
		bh->down_by_health = true;
		struct buf *out = buf_new(256, 4096);
		directing_set_up(bh->name, false, out);
		buf_free(&out);
	} else if (ok && info.state == DIRECTOR_BACKEND_DOWN && bh->down_by_health &&
		   bh->oks >= rise) {
		log_notice("health: backend %s is up again after %u good checks",
			   bh->name, bh->oks);
		bh->down_by_health = false;
		struct buf *out = buf_new(256, 4096);
		directing_set_up(bh->name, true, out);
		buf_free(&out);
	}
}

static void probe_done(struct probe *p, bool ok, const char *error)
{
	struct backend_health *bh = p->bh;
	probe_free(&p);
	health_result(bh, ok, error);
}

static void probe_timeout(void *context)
{
	struct probe *p = context;
	probe_done(p, false, p->step == PROBE_CONNECTING ? "connect timed out" :
			     "no answer in time");
}

static bool probe_write(struct probe *p, const char *text, size_t len)
{
	if (conn_write(p->conn, text, len) != (ssize_t)len) {
		probe_done(p, false, "write failed");
		return false;
	}
	return true;
}

/* LOGOUT / QUIT, then wait for its answer. False when the probe ended. */
static bool probe_send_logout(struct probe *p)
{
	const char *bye = p->pop3 ? "QUIT\r\n" : "h LOGOUT\r\n";
	if (!probe_write(p, bye, strlen(bye)))
		return false;
	p->step = PROBE_LOGOUT;
	return true;
}

/* The check user's login: IMAP AUTHENTICATE PLAIN, POP3 USER then PASS. The password never reaches a log. False when the probe ended. */
static bool probe_send_login(struct probe *p)
{
	struct buf *cmd = buf_new_secret(128, 4000);
	bool ok;
	if (p->pop3) {
		buf_printf(cmd, "USER %s\r\n", p->user);
		p->step = PROBE_USER;
	} else {
		/* AUTHENTICATE PLAIN with an initial response (SASL-IR, which
		 * Dovecot offers): nothing to quote */
		struct buf *raw = buf_new_secret(128, 1200);
		struct buf *b64 = buf_new_secret(256, 2400);
		buf_append_byte(raw, '\0');
		buf_append_cstr(raw, p->user);
		buf_append_byte(raw, '\0');
		buf_append_cstr(raw, p->password);
		base64_encode(raw->data, raw->len, b64);
		buf_append_cstr(cmd, "l AUTHENTICATE PLAIN ");
		buf_append(cmd, b64->data, b64->len);
		buf_append_cstr(cmd, "\r\n");
		buf_free_secret(&raw);
		buf_free_secret(&b64);
		p->step = PROBE_LOGIN;
	}
	ok = probe_write(p, (const char *)cmd->data, cmd->len);
	buf_free_secret(&cmd);
	return ok;
}

static bool probe_write_pass(struct probe *p)
{
	struct buf *cmd = buf_new_secret(128, 600);
	buf_printf(cmd, "PASS %s\r\n", p->password);
	p->step = PROBE_LOGIN; /* before the write: a failed one frees p */
	bool ok = probe_write(p, (const char *)cmd->data, cmd->len);
	buf_free_secret(&cmd);
	return ok;
}

/* Handles complete lines; returns true when the probe ended. */
static bool probe_lines(struct probe *p)
{
	for (;;) {
		struct str all = buf_str(p->input);
		ptrdiff_t lf = str_index(all, '\n');
		if (lf < 0)
			return false;
		struct str line = str_trim(str_slice(all, 0, (size_t)lf));
		bool greeting_ok = p->pop3 ? str_has_prefix_nocase(line, STR("+OK")) :
					     str_has_prefix_nocase(line, STR("* OK"));
		if (p->step == PROBE_GREETING) {
			if (!greeting_ok) {
				char safe[100], why[160];
				str_sanitize(line, safe, sizeof(safe));
				str_printf(why, sizeof(why), "unexpected greeting: %s", safe);
				probe_done(p, false, why);
				return true;
			}
			if (p->login) {
				if (!probe_send_login(p))
					return true;
			} else if (!probe_send_logout(p)) {
				return true;
			}
		} else if (p->step == PROBE_USER || p->step == PROBE_LOGIN) {
			bool tagged = p->pop3 || str_has_prefix_nocase(line, STR("l "));
			if (tagged) {
				bool ok = p->pop3 ? str_has_prefix_nocase(line, STR("+OK")) :
						    str_has_prefix_nocase(line, STR("l OK"));
				if (!ok) {
					char safe[100], why[160];
					str_sanitize(line, safe, sizeof(safe));
					str_printf(why, sizeof(why), "check login as %s failed: %s",
						   p->user, safe);
					probe_done(p, false, why);
					return true;
				}
				if (p->step == PROBE_USER) {
					if (!probe_write_pass(p))
						return true;
				} else if (!probe_send_logout(p)) {
					return true;
				}
			}
		} else if (p->pop3 ? str_has_prefix_nocase(line, STR("+OK")) :
			   str_has_prefix_nocase(line, STR("h OK"))) {
			probe_done(p, true, NULL);
			return true;
		}
		buf_consume(p->input, (size_t)lf + 1);
	}
}

static void probe_event(struct conn *conn, enum conn_event ev, void *context)
{
	struct probe *p = context;
	uint8_t tmp[1024];

	switch (ev) {
	case CONN_EV_WRITABLE: {
		int r = net_connect_result(conn_fd(conn));
		if (r == 0)
			return;
		if (r < 0) {
			char why[160];
			str_printf(why, sizeof(why), "connect failed: %s",
				   strerror(errno));
			probe_done(p, false, why);
			return;
		}
		if (p->be->set->ssl == BACKEND_SSL_YES && p->be->ssl_ctx != NULL) {
			char terr[TLS_ERROR_MAX];
			const struct backend_settings *bs = p->be->set;
			SSL *ssl = tls_client_ssl_new(p->be->ssl_ctx,
						      bs->ssl_host[0] != '\0' ?
						      bs->ssl_host : bs->host,
						      terr, sizeof(terr));
			if (ssl == NULL || conn_start_tls(conn, ssl, false) < 0) {
				probe_done(p, false, "TLS setup failed");
				return;
			}
			p->step = PROBE_TLS;
			return;
		}
		p->step = PROBE_GREETING;
		conn_want(conn, true, false);
		return;
	}
	case CONN_EV_READABLE:
		for (;;) {
			ssize_t n = conn_read(conn, tmp, sizeof(tmp));
			if (n == CONN_AGAIN)
				return;
			if (n == CONN_EOF || n == CONN_FAILED) {
				probe_done(p, false, "connection closed before the answer");
				return;
			}
			if (buf_append(p->input, tmp, (size_t)n) < 0) {
				probe_done(p, false, "over-long line");
				return;
			}
			if (probe_lines(p))
				return;
		}
	case CONN_EV_TLS_READY:
		if (p->step == PROBE_TLS) {
			p->step = PROBE_GREETING;
			conn_want(conn, true, false);
			return;
		}
		probe_done(p, false, "TLS failed");
		return;
	case CONN_EV_ERROR: {
		char why[200];
		str_printf(why, sizeof(why), "TLS failed: %s", conn_error(conn));
		probe_done(p, false, why);
		return;
	}
	}
}

static void probe_start(struct backend_health *bh, const struct proxy_backend *be,
			const struct proxy_config *cfg)
{
	uint64_t timeout_msecs = cfg->set.health_timeout_msecs;
	struct net_addr addr = be->addr;
	char err[NET_ERROR_MAX];
	bool pop3 = be->set->imap_port == 0;
	uint16_t port = (uint16_t)(pop3 ? be->set->pop3_port : be->set->imap_port);

	/* a DNS name without an address yet: nothing to check (logins
	 * pass it by); its checks start with the generation that has one */
	if (port == 0 || be->unresolved)
		return;
	net_addr_set_port(&addr, port);
	int fd = net_connect(&addr, NULL, err, sizeof(err));
	if (fd < 0) {
		health_result(bh, false, err);
		return;
	}
	struct probe *p = xcalloc(1, sizeof(*p));
	p->bh = bh;
	p->pop3 = pop3;
	p->be = be;
	/* the round's generation (current: we are on the main thread) */
	p->cfg = proxy_config_ref();
	/* a password only over TLS or to a backend without TLS (a trusted
	 * network); STARTTLS backends get the greeting check */
	if (cfg->set.health_user != NULL && cfg->set.health_user[0] != '\0' &&
	    be->set->ssl != BACKEND_SSL_STARTTLS) {
		p->login = true;
		str_copy(str_cstr(cfg->set.health_user), p->user, sizeof(p->user));
		str_copy(str_cstr(cfg->set.health_password != NULL ?
				  cfg->set.health_password : ""),
			 p->password, sizeof(p->password));
	}
	p->input = buf_new(256, HEALTH_LINE_MAX);
	p->conn = conn_new(health.base, fd, probe_event, p);
	p->timer = net_timer_new(health.base, probe_timeout, p);
	net_timer_start(p->timer, (unsigned int)timeout_msecs, false);
	conn_want(p->conn, false, true);
	bh->probe = p;
}

static unsigned int passive_take(const char *backend);

static void health_tick(void *context)
{
	struct proxy_config *cfg = proxy_config_ref();
	(void)context;

	/* follow the backend list of the current configuration */
	struct backend_health *nb = xcalloc(cfg->backend_count + 1, sizeof(*nb));
	for (size_t i = 0; i < cfg->backend_count; i++) {
		const char *name = cfg->backends[i].set->name;
		struct backend_health *old = health_find(name);
		if (old != NULL) {
			nb[i] = *old;
			if (nb[i].probe != NULL)
				nb[i].probe->bh = &nb[i];
			old->probe = NULL;
		} else {
			str_copy(str_cstr(name), nb[i].name, sizeof(nb[i].name));
		}
	}
	for (size_t i = 0; i < health.count; i++)
		probe_free(&health.backends[i].probe);
	free(health.backends);
	health.backends = nb;
	health.count = cfg->backend_count;

	for (size_t i = 0; i < cfg->backend_count; i++) {
		unsigned int failed = passive_take(health.backends[i].name);
		if (failed > 0) {
			/* logins could not connect: a failed check of its own */
			char why[96];
			str_printf(why, sizeof(why), "%u logins could not connect", failed);
			health_result(&health.backends[i], false, why);
		}
		if (health.backends[i].probe == NULL)
			probe_start(&health.backends[i], &cfg->backends[i], cfg);
	}
	net_timer_start(health.tick, (unsigned int)cfg->set.health_interval_msecs,
			false);
	proxy_config_unref(&cfg);
}

void health_start(struct event_base *main_base)
{
	struct proxy_config *cfg = proxy_config_ref();
	bool on = cfg->set.health_interval_msecs > 0;
	proxy_config_unref(&cfg);
	if (!on)
		return;
	health.base = main_base;
	health.tick = net_timer_new(main_base, health_tick, NULL);
	net_timer_start(health.tick, 1, false);
}

void health_stop(void)
{
	for (size_t i = 0; i < health.count; i++)
		probe_free(&health.backends[i].probe);
	free(health.backends);
	health.backends = NULL;
	health.count = 0;
	net_timer_free(&health.tick);
}

/* ---- passive health ------------------------------------------------------ */

/* Failed connects of logins since the last round, per backend name. A
 * small table under a mutex: it is touched only when a connect fails. */
#define PASSIVE_MAX 256
static struct {
	pthread_mutex_t lock;
	struct {
		char name[DIRECTOR_NAME_MAX];
		unsigned int count;
	} entries[PASSIVE_MAX];
	size_t count;
} passive = { .lock = PTHREAD_MUTEX_INITIALIZER };

void health_passive_failure(const char *backend)
{
	pthread_mutex_lock(&passive.lock);
	size_t i = 0;
	while (i < passive.count && strcmp(passive.entries[i].name, backend) != 0)
		i++;
	if (i == passive.count && passive.count < PASSIVE_MAX) {
		str_copy(str_cstr(backend), passive.entries[i].name,
			 sizeof(passive.entries[i].name));
		passive.entries[i].count = 0;
		passive.count++;
	}
	if (i < passive.count)
		passive.entries[i].count++;
	pthread_mutex_unlock(&passive.lock);
}

/* Takes (and resets) backend's count. */
static unsigned int passive_take(const char *backend)
{
	unsigned int n = 0;
	pthread_mutex_lock(&passive.lock);
	for (size_t i = 0; i < passive.count; i++) {
		if (strcmp(passive.entries[i].name, backend) == 0) {
			n = passive.entries[i].count;
			passive.entries[i] = passive.entries[--passive.count];
			break;
		}
	}
	pthread_mutex_unlock(&passive.lock);
	return n;
}
