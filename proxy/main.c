/*
 * mailring-proxy: the IMAP/POP3 front proxy.
 *
 *   mailring-proxy [-c FILE] [-t | -n | -a]
 *
 * Runs in the foreground (systemd, or `make run`); logs to stderr or
 * syslog. SIGHUP reloads the config and certificates without dropping
 * sessions; SIGTERM/SIGINT stop accepting, close sessions that are not
 * logged in, give logged-in sessions shutdown_grace to finish, then close
 * them with a BYE.
 */
#include "proxy.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <syslog.h>

#include <event2/event.h>

#include "admin.h"
#include "directing.h"
#include "discovery.h"
#include "health.h"
#include "str.h"
#include "tls.h"
#include "xmalloc.h"

#define DEFAULT_CONFIG "/etc/mailring/mailring-proxy.conf"

static struct event_base *main_base;

/* Expiry and state-file saves: often enough that a crash loses at most
 * this much of the mapping history. */
#define DIRECTOR_TICK_MSECS 1000

static void director_tick(void *context)
{
	(void)context;
	directing_tick();
}

static void usage(void)
{
	fprintf(stderr,
		"usage: mailring-proxy [-c config] [-t] [-n] [-a]\n"
		"  -c FILE  config file (default " DEFAULT_CONFIG ")\n"
		"  -t       check the config file and exit\n"
		"  -n       print settings that differ from the defaults\n"
		"  -a       print all settings\n");
}

static void apply_logging(const struct proxy_settings *set)
{
	log_set_level((enum log_level)set->log_level);
	if (set->log_syslog) {
		int facility = LOG_MAIL;
		if (log_syslog_facility_parse(set->syslog_facility, &facility) < 0)
			log_warnx("unknown syslog_facility '%s': using mail",
				  set->syslog_facility);
		log_set_syslog(true, facility);
	} else {
		log_set_syslog(false, 0);
	}
}

static struct tls_server_settings tls_settings(const struct proxy_settings *set)
{
	struct tls_server_settings ts = {
		.cert_file = proxy_settings_path(set->ssl_cert),
		.key_file = proxy_settings_path(set->ssl_key),
	};
	return ts;
}

/* Listener changes need new sockets: a reload may change anything else. */
static bool listeners_equal(const struct proxy_settings *a,
			    const struct proxy_settings *b)
{
	if (a->listener_count != b->listener_count)
		return false;
	for (size_t i = 0; i < a->listener_count; i++) {
		const struct listener_settings *x = &a->listeners[i], *y = &b->listeners[i];
		if (strcmp(x->name, y->name) != 0 || x->protocol != y->protocol ||
		    x->ssl != y->ssl || x->address.count != y->address.count)
			return false;
		for (size_t j = 0; j < x->address.count; j++) {
			if (strcmp(x->address.items[j], y->address.items[j]) != 0)
				return false;
		}
	}
	return true;
}

/* Re-reads the config file, adds the backends added at run time, and
 * installs the result as the new generation. */
static void reconfigure(void)
{
	struct proxy_settings set;
	struct config_errors errors = { 0 };
	char err[512];

	if (config_load_file(&proxy_settings_schema, proxy.config_path, &set,
			     &errors) < 0) {
		for (size_t i = 0; i < errors.count; i++)
			log_error("%s", errors.lines[i]);
		config_errors_free(&errors);
		log_error("reload failed: keeping the running configuration");
		return;
	}
	config_errors_free(&errors);
	directing_runtime_apply(&set);
	discovery_apply(&set);
	if (proxy_settings_check(&set, err, sizeof(err)) < 0) {
		log_error("reload failed: %s: %s", proxy.config_path, err);
		config_free(&proxy_settings_schema, &set);
		return;
	}
	struct proxy_config *cur = proxy_config_ref();
	bool same_listeners = listeners_equal(&cur->set, &set);
	bool tls_before = proxy.tls != NULL;
	proxy_config_unref(&cur);
	if (!same_listeners) {
		log_error("reload failed: listener changes need a restart");
		config_free(&proxy_settings_schema, &set);
		return;
	}
	if (set.ssl_cert[0] != '\0') {
		struct tls_server_settings ts = tls_settings(&set);
		char terr[TLS_ERROR_MAX];
		if (tls_before) {
			if (tls_server_reload(proxy.tls, &ts, terr, sizeof(terr)) < 0) {
				log_error("reload failed: %s", terr);
				config_free(&proxy_settings_schema, &set);
				return;
			}
		} else {
			log_warnx("reload: ssl_cert was added; TLS needs a restart");
		}
	}
	apply_logging(&set);
	struct proxy_config *cfg = proxy_config_build(&set, err, sizeof(err));
	if (cfg == NULL) {
		log_error("reload failed: %s", err);
		config_free(&proxy_settings_schema, &set);
		return;
	}
	/* sessions on a backend that is gone are closed, spread out */
	struct proxy_config *old = proxy_config_ref();
	proxy_config_install(cfg);
	directing_reload(cfg);
	log_notice("configuration reloaded: %zu backends", cfg->backend_count);
	for (size_t i = 0; i < old->backend_count; i++) {
		const char *name = old->backends[i].set->name;
		bool kept = false;
		for (size_t j = 0; j < cfg->backend_count; j++)
			kept |= strcmp(cfg->backends[j].set->name, name) == 0;
		if (kept)
			continue;
		unsigned int n = proxy_kick(NULL, name, "Backend was removed.", true);
		log_notice("backend %s removed: closing its %u sessions", name, n);
	}
	proxy_config_unref(&old);
}

static void on_reload(int signo, void *context)
{
	(void)signo;
	(void)context;
	log_notice("SIGHUP received: reloading %s", proxy.config_path);
	reconfigure();
}

static void on_reconfigure(evutil_socket_t fd, short what, void *context)
{
	char *why = context;
	(void)fd;
	(void)what;
	log_notice("reconfiguring (%s): reloading %s", why, proxy.config_path);
	free(why);
	reconfigure();
}

/* The director's hook: any thread; the work happens on the main loop. */
static void request_reconfigure(const char *why)
{
	struct timeval now = { 0, 0 };
	char *copy = xstrdup(why);
	if (main_base == NULL ||
	    event_base_once(main_base, -1, EV_TIMEOUT, on_reconfigure, copy,
			    &now) < 0)
		free(copy);
}

static void on_shutdown(int signo, void *context)
{
	(void)context;
	if (atomic_exchange(&proxy.shutting_down, true))
		return;
	struct proxy_config *cfg = proxy_config_ref();
	uint64_t grace = cfg->set.shutdown_grace_msecs;
	proxy_config_unref(&cfg);
	log_notice("%s received: stopping (shutdown_grace=%llums)",
		   signo == SIGINT ? "SIGINT" : "SIGTERM",
		   (unsigned long long)grace);
	net_workers_stop(proxy.workers, (unsigned int)grace);
	event_base_loopbreak(main_base);
}

static void raise_fd_limit(void)
{
	struct rlimit rl;
	/* every session needs two sockets; idle sessions hold no pipes */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int start_listeners(const struct proxy_settings *set)
{
	char err[NET_ERROR_MAX], addr[NET_ADDR_STR_MAX];

	for (size_t i = 0; i < set->listener_count; i++) {
		const struct listener_settings *l = &set->listeners[i];
		for (size_t j = 0; j < l->address.count; j++) {
			struct net_addr a, bound;
			const char *error;
			if (net_addr_parse(l->address.items[j], 0, &a, &error) < 0) {
				log_error("listener %s: %s", l->name, error);
				return -1;
			}
			if (net_workers_add_listener(proxy.workers, &a, client_accept,
						     (void *)(uintptr_t)i, &bound,
						     err, sizeof(err)) < 0) {
				log_error("listener %s: %s", l->name, err);
				return -1;
			}
			log_info("listening on %s (%s%s%s)",
				 net_addr_str(&bound, addr, sizeof(addr)),
				 l->protocol == LISTENER_POP3 ? "pop3" :
				 l->protocol == LISTENER_LMTP ? "lmtp" : "imap",
				 l->ssl ? ", implicit TLS" : "",
				 l->haproxy ? ", PROXY protocol" : "");
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct config_cli cli = { .path = DEFAULT_CONFIG };
	struct proxy_settings set;
	char err[512];
	char *auth_error = NULL;
	int opt, ret;

	while ((opt = getopt(argc, argv, CONFIG_CLI_OPTS "h")) != -1) {
		if (config_cli_option(&cli, opt, optarg))
			continue;
		usage();
		return opt == 'h' ? 0 : 1;
	}
	log_init("mailring-proxy", LOG_LEVEL_INFO);
	ret = config_cli_run(&cli, &proxy_settings_schema, &set, stdout, stderr);
	if (ret <= 0)
		return ret == 0 ? 0 : 1;
	if (proxy_settings_check(&set, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: %s\n", cli.path, err);
		config_free(&proxy_settings_schema, &set);
		return 1;
	}
	proxy.config_path = cli.path;
	apply_logging(&set);
	raise_fd_limit();
	if (net_init() < 0 || net_ignore_sigpipe() < 0)
		fatalx("network initialisation failed");
	if (set.ssl_cert[0] != '\0') {
		struct tls_server_settings ts = tls_settings(&set);
		char terr[TLS_ERROR_MAX];
		proxy.tls = tls_server_new(&ts, terr, sizeof(terr));
		if (proxy.tls == NULL)
			fatalx("%s", terr);
	}
	struct auth_settings as;
	proxy_settings_auth(&set, &as);
	proxy.auth = auth_new(&as, &auth_error);
	if (proxy.auth == NULL)
		fatalx("auth: %s", auth_error != NULL ? auth_error : "failed");
	proxy.iplimit = iplimit_new();
	unsigned int nworkers = (unsigned int)set.workers;

	/* names resolve once discovery runs: the reconfigure after their
	 * first answers fills in what this generation leaves unresolved */
	discovery_apply(&set);
	struct proxy_config *cfg = proxy_config_build(&set, err, sizeof(err));
	if (cfg == NULL)
		fatalx("%s: %s", cli.path, err);
	proxy_config_install(cfg);
	if (directing_init(cfg, err, sizeof(err)) < 0)
		fatalx("director: %s", err);

	proxy.workers = net_workers_new(proxy_worker_hooks(nworkers), err, sizeof(err));
	if (proxy.workers == NULL)
		fatalx("%s", err);
	cfg = proxy_config_ref();
	ret = start_listeners(&cfg->set);
	size_t nbackends = cfg->backend_count;
	proxy_config_unref(&cfg);
	if (ret < 0)
		return 1;
	if (net_workers_start(proxy.workers, err, sizeof(err)) < 0)
		fatalx("%s", err);

	main_base = event_base_new();
	directing_set_reconfigure(request_reconfigure);
	if (directing_has_runtime_backends())
		request_reconfigure("backends added at run time");
	directing_start();
	discovery_start(main_base);
	struct net_signals *sig = net_signals_new(main_base, on_reload, on_shutdown,
						  NULL, err, sizeof(err));
	if (sig == NULL)
		fatalx("%s", err);
	cfg = proxy_config_ref();
	ret = admin_start(main_base, cfg->set.admin_socket, err, sizeof(err));
	proxy_config_unref(&cfg);
	if (ret < 0)
		fatalx("%s", err);
	health_start(main_base);
	struct net_timer *tick = net_timer_new(main_base, director_tick, NULL);
	net_timer_start(tick, DIRECTOR_TICK_MSECS, true);
	log_notice("mailring-proxy started: %u workers, %zu backends",
		   net_workers_count(proxy.workers), nbackends);
	event_base_dispatch(main_base);
	net_timer_free(&tick);
	health_stop();
	discovery_stop();
	admin_stop();
	directing_stop();

	net_workers_free(&proxy.workers);
	net_signals_free(&sig);
	event_base_free(main_base);
	auth_free(&proxy.auth);
	tls_server_free(&proxy.tls);
	iplimit_free(&proxy.iplimit);
	directing_deinit();
	proxy_config_install(NULL);
	log_notice("mailring-proxy stopped");
	return 0;
}
