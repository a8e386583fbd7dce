/*
 * Process-wide state of mailring-proxy: configuration generations, the
 * workers' setup and teardown, and the graceful stop.
 */
#include "proxy.h"

#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "discovery.h"
#include "str.h"
#include "tls.h"
#include "xmalloc.h"

struct proxy proxy;

static pthread_mutex_t config_lock = PTHREAD_MUTEX_INITIALIZER;
static struct proxy_config *config_current;

struct proxy_config *proxy_config_ref(void)
{
	pthread_mutex_lock(&config_lock);
	struct proxy_config *cfg = config_current;
	atomic_fetch_add(&cfg->refcount, 1);
	pthread_mutex_unlock(&config_lock);
	return cfg;
}

static void proxy_config_destroy(struct proxy_config *cfg)
{
	for (size_t i = 0; i < cfg->backend_count; i++) {
		if (cfg->backends[i].ssl_ctx != NULL)
			SSL_CTX_free(cfg->backends[i].ssl_ctx);
	}
	free(cfg->backends);
	free(cfg->source_ips);
	config_free(&proxy_settings_schema, &cfg->set);
	free(cfg);
}

void proxy_config_unref(struct proxy_config **cfgp)
{
	struct proxy_config *cfg = *cfgp;

	if (cfg == NULL)
		return;
	*cfgp = NULL;
	if (atomic_fetch_sub(&cfg->refcount, 1) == 1)
		proxy_config_destroy(cfg);
}

struct proxy_config *proxy_config_build(struct proxy_settings *set, char *err,
					size_t errsize)
{
	struct proxy_config *cfg = xcalloc(1, sizeof(*cfg));

	atomic_init(&cfg->refcount, 1);
	cfg->set = *set;
	memset(set, 0, sizeof(*set));
	cfg->backend_count = cfg->set.backend_count;
	cfg->backends = xcalloc(cfg->backend_count + 1, sizeof(*cfg->backends));
	for (size_t i = 0; i < cfg->backend_count; i++) {
		struct proxy_backend *be = &cfg->backends[i];
		const char *error;
		be->set = &cfg->set.backends[i];
		if (net_addr_parse(be->set->host, NET_ADDR_PORT_OPTIONAL,
				   &be->addr, &error) < 0) {
			if (!discovery_is_host_name(be->set->host)) {
				str_printf(err, errsize, "backend %s: %s",
					   be->set->name, error);
				goto fail;
			}
			/* a DNS name: its address as discovery knows it now;
			 * the reconfigure after its first answer fills it in */
			memset(&be->addr, 0, sizeof(be->addr));
			be->unresolved = !discovery_addr(be->set->host, &be->addr);
		}
		if (be->set->ssl != BACKEND_SSL_NO) {
			struct tls_client_settings ts = {
				.ca_file = be->set->ssl_ca[0] != '\0' ?
					   be->set->ssl_ca : NULL,
				.insecure_no_verify = !be->set->ssl_verify,
			};
			char terr[TLS_ERROR_MAX];
			be->ssl_ctx = tls_client_ctx_new(&ts, terr, sizeof(terr));
			if (be->ssl_ctx == NULL) {
				str_printf(err, errsize, "backend %s: %s",
					   be->set->name, terr);
				goto fail;
			}
		}
	}
	cfg->source_ip_count = cfg->set.source_ips.count;
	cfg->source_ips = xcalloc(cfg->source_ip_count + 1, sizeof(*cfg->source_ips));
	for (size_t i = 0; i < cfg->source_ip_count; i++) {
		const char *error;
		if (net_addr_parse(cfg->set.source_ips.items[i],
				   NET_ADDR_PORT_OPTIONAL | NET_ADDR_PORT_ZERO,
				   &cfg->source_ips[i], &error) < 0) {
			str_printf(err, errsize, "source_ips: %s", error);
			goto fail;
		}
		net_addr_set_port(&cfg->source_ips[i], 0);
	}
	return cfg;
fail:
	proxy_config_destroy(cfg);
	return NULL;
}


struct str proxy_user_key(const struct proxy_settings *set, const char *user)
{
	struct str u = str_cstr(user);
	if (set->user_hash_key == USER_HASH_KEY_DOMAIN) {
		ptrdiff_t at = str_index(u, '@');
		if (at >= 0)
			return str_slice(u, (size_t)at + 1, u.len);
	}
	return u;
}

void proxy_config_install(struct proxy_config *cfg)
{
	pthread_mutex_lock(&config_lock);
	struct proxy_config *old = config_current;
	config_current = cfg;
	pthread_mutex_unlock(&config_lock);
	proxy_config_unref(&old);
}

/* ---- workers ------------------------------------------------------------ */

static void worker_init(struct net_worker *nw, void *context)
{
	struct proxy_worker *w = xcalloc(1, sizeof(*w));
	(void)context;
	w->nw = nw;
	w->base = net_worker_base(nw);
	net_worker_set_data(nw, w);
}

static void worker_kick_all(struct proxy_worker *w, bool logged_in_too,
			    const char *reason)
{
	struct client *c = w->clients, *next;
	for (; c != NULL; c = next) {
		next = c->next;
		if (c->state == CLIENT_STATE_RELAY && !logged_in_too)
			continue;
		client_kick(c, reason);
	}
}

static void worker_deinit(struct net_worker *nw, void *context)
{
	struct proxy_worker *w = net_worker_get_data(nw);
	(void)context;

	/* the grace time is over: whoever is left goes now */
	worker_kick_all(w, true, "Server shutting down.");
	while (w->clients != NULL)
		client_destroy(w->clients, "Disconnected: server shutting down");
	/* run the deferred frees */
	event_base_loop(w->base, EVLOOP_NONBLOCK);
	for (unsigned int i = 0; i < w->pipe_pool_count; i++) {
		close(w->pipe_pool[2 * i]);
		close(w->pipe_pool[2 * i + 1]);
	}
	free(w->pipe_pool);
	net_timer_free(&w->drain_timer);
	free(w);
	net_worker_set_data(nw, NULL);
}

static void worker_check_drained(void *context)
{
	struct proxy_worker *w = context;
	if (w->client_count == 0)
		net_worker_drained(w->nw);
}

static void worker_stopping(struct net_worker *nw, void *context)
{
	struct proxy_worker *w = net_worker_get_data(nw);
	(void)context;

	w->stopping = true;
	/* not logged in yet: nothing to lose, close now */
	worker_kick_all(w, false, "Server shutting down.");
	w->drain_timer = net_timer_new(w->base, worker_check_drained, w);
	net_timer_start(w->drain_timer, 100, true);
	worker_check_drained(w);
}

const struct net_workers_settings *proxy_worker_hooks(unsigned int count)
{
	static struct net_workers_settings set;
	memset(&set, 0, sizeof(set));
	set.count = count;
	set.init = worker_init;
	set.deinit = worker_deinit;
	set.stopping = worker_stopping;
	return &set;
}
