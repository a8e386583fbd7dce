/*
 * mailring-backend: the mail node (issue 5): IMAP, POP3 and LMTP over
 * Maildir. The three protocols' sessions share the worker threads.
 *
 *   mailring-backend [-c FILE] [-t | -n | -a]
 *
 * Runs in the foreground and logs to stderr or syslog. SIGHUP reloads the
 * config (new sessions get the new settings; listener changes need a
 * restart and are refused with a log line); SIGTERM/SIGINT stop accepting,
 * close sessions between commands, give the others shutdown_grace.
 */
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <event2/event.h>

#include "auth/auth.h"
#include "backend_settings.h"
#include "config.h"
#include "imap_server.h"
#include "lmtp_server.h"
#include "node_admin.h"
#include "io_pool.h"
#include "owner.h"
#include "supervisor.h"
#include "tls.h"
#include "log.h"
#include "mailbox.h"
#include "maildir.h"
#include "net.h"
#include "pop3_server.h"

#define DEFAULT_CONFIG "/etc/mailring/mailring-backend.conf"

static struct event_base *main_base;
static struct net_workers *workers;
static const char *config_path;
static atomic_bool shutting_down;

static void usage(void)
{
	fprintf(stderr,
		"usage: mailring-backend [-c config] [-t] [-n] [-a]\n"
		"       mailring-backend [-c config] resync USER [MAILBOX]\n"
		"       mailring-backend [-c config] index dump USER MAILBOX\n"
		"       mailring-backend [-c config] kick USER\n"
		"  -c FILE  config file (default " DEFAULT_CONFIG ")\n"
		"  -t       check the config file and exit\n"
		"  -n       print settings that differ from the defaults\n"
		"  -a       print all settings\n"
		"  resync      rebuild the UID list and index of USER's MAILBOX\n"
		"              (default INBOX) from the Maildir, keeping UIDs and flags\n"
		"  index dump  print what the index of USER's MAILBOX holds\n"
		"  kick        close USER's IMAP and POP3 sessions on the running\n"
		"              node (through admin_socket)\n");
}

static void apply_logging(const struct node_settings *set)
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

static bool listeners_equal(const struct node_settings *a,
			    const struct node_settings *b)
{
	if (a->listener_count != b->listener_count || a->workers != b->workers)
		return false;
	for (size_t i = 0; i < a->listener_count; i++) {
		const struct node_listener_settings *x = &a->listeners[i];
		const struct node_listener_settings *y = &b->listeners[i];
		if (strcmp(x->name, y->name) != 0 || x->protocol != y->protocol ||
		    x->address.count != y->address.count)
			return false;
		for (size_t j = 0; j < x->address.count; j++) {
			if (strcmp(x->address.items[j], y->address.items[j]) != 0)
				return false;
		}
	}
	return true;
}

static void on_reload(int signo, void *context)
{
	struct node_settings set;
	struct config_errors errors = { 0 };
	char err[512];
	(void)signo;
	(void)context;

	log_notice("SIGHUP received: reloading %s", config_path);
	if (config_load_file(&node_settings_schema, config_path, &set,
			     &errors) < 0) {
		for (size_t i = 0; i < errors.count; i++)
			log_error("%s", errors.lines[i]);
		config_errors_free(&errors);
		log_error("reload failed: keeping the running configuration");
		return;
	}
	config_errors_free(&errors);
	if (node_settings_check(&set, err, sizeof(err)) < 0) {
		log_error("reload failed: %s: %s", config_path, err);
		config_free(&node_settings_schema, &set);
		return;
	}
	if (!listeners_equal(pop3_server_settings(), &set)) {
		log_error("reload failed: listener or workers changes need a "
			  "restart");
		config_free(&node_settings_schema, &set);
		return;
	}
	/* passdb and auth_* settings are read at start only (the auth
	 * service keeps running; the passwd-file itself is re-read by it) */
	apply_logging(&set);
	lmtp_server_config_install(&set);
	imap_server_config_install(&set);
	pop3_server_config_install(&set);
	log_notice("configuration reloaded");
}

static void on_shutdown(int signo, void *context)
{
	(void)context;
	if (atomic_exchange(&shutting_down, true))
		return;
	uint64_t grace = pop3_server_settings()->shutdown_grace_msecs;
	log_notice("%s received: stopping (shutdown_grace=%llums)",
		   signo == SIGINT ? "SIGINT" : "SIGTERM",
		   (unsigned long long)grace);
	net_workers_stop(workers, (unsigned int)grace);
	event_base_loopbreak(main_base);
}

static void owner_timer_cb(void *context)
{
	(void)context;
	owner_refresh_all();
}

static int start_listeners(const struct node_settings *set)
{
	char err[NET_ERROR_MAX], addr[NET_ADDR_STR_MAX];

	for (size_t i = 0; i < set->listener_count; i++) {
		const struct node_listener_settings *l = &set->listeners[i];
		for (size_t j = 0; j < l->address.count; j++) {
			struct net_addr a, bound;
			const char *error;
			if (net_addr_parse(l->address.items[j], 0, &a, &error) < 0) {
				log_error("listener %s: %s", l->name, error);
				return -1;
			}
			net_accept_fn *accept_fn =
			    l->protocol == NODE_LISTENER_LMTP ? lmtp_server_accept
			    : l->protocol == NODE_LISTENER_IMAP
				? imap_server_accept
				: pop3_server_accept;
			static bool implicit_tls = true;
			void *ctx = l->ssl ? &implicit_tls : NULL;
			if (net_workers_add_listener(workers, &a, accept_fn,
						     ctx, &bound, err,
						     sizeof(err)) < 0) {
				log_error("listener %s: %s", l->name, err);
				return -1;
			}
			log_info("listening on %s (%s)",
				 net_addr_str(&bound, addr, sizeof(addr)),
				 node_listener_protocol_name(l->protocol));
		}
	}
	return 0;
}

/* The workers run POP3's hooks and LMTP's next to them. */
static const struct net_workers_settings *pop3_hooks;

static void worker_init(struct net_worker *worker, void *context)
{
	(void)context;
	lmtp_server_worker_init(worker);
	imap_server_worker_init(worker);
	pop3_hooks->init(worker, pop3_hooks->context);
}

static void worker_stopping(struct net_worker *worker, void *context)
{
	(void)context;
	/* LMTP closes its sessions at once; POP3 says when it is drained */
	lmtp_server_worker_stopping(worker);
	imap_server_worker_stopping(worker);
	pop3_hooks->stopping(worker, pop3_hooks->context);
}

static void worker_deinit(struct net_worker *worker, void *context)
{
	(void)context;
	lmtp_server_worker_deinit(worker);
	imap_server_worker_deinit(worker);
	pop3_hooks->deinit(worker, pop3_hooks->context);
}

static const struct net_workers_settings *worker_hooks(unsigned int count)
{
	static struct net_workers_settings set;
	pop3_hooks = pop3_server_worker_hooks(count);
	set = *pop3_hooks;
	set.init = worker_init;
	set.stopping = worker_stopping;
	set.deinit = worker_deinit;
	return &set;
}

/* `resync USER [MAILBOX]` and `index dump USER MAILBOX`: USER is the
 * canonical user name (as the passdb returns it; mail_location is expanded
 * with it), MAILBOX INBOX or a folder. Exit codes: 0 done, 1 failed, 64
 * usage. */
static int admin_command(const struct node_settings *set, int argc, char **argv)
{
	bool dump = argc >= 2 && strcmp(argv[0], "index") == 0 &&
		    strcmp(argv[1], "dump") == 0;
	bool resync = argc >= 1 && strcmp(argv[0], "resync") == 0;

	if (argc >= 1 && strcmp(argv[0], "kick") == 0) {
		char line[512];
		if (argc != 2 || set->admin_socket[0] == '\0' ||
		    str_printf(line, sizeof(line), "kick %s", argv[1]) < 0) {
			if (set->admin_socket[0] == '\0')
				fprintf(stderr, "mailring-backend: "
						"admin_socket is not set\n");
			else
				usage();
			return 64;
		}
		int r = node_admin_request(set->admin_socket, line, stdout,
					   stderr);
		return r == 0 ? 0 : 1;
	}
	int first = dump ? 2 : 1;
	int nargs = argc - first;
	char root[4096], dir[4096];
	const char *error = NULL;
	struct maildir_error merr;

	if ((!dump && !resync) || nargs < 1 || nargs > 2 || (dump && nargs != 2)) {
		usage();
		return 64;
	}
	const char *user = argv[first];
	const char *mailbox = nargs == 2 ? argv[first + 1] : "INBOX";
	if (node_mail_location_expand(set->mail_location, str_cstr(user), root,
				      sizeof(root), &error) < 0) {
		fprintf(stderr, "mailring-backend: user %s: %s\n", user, error);
		return 1;
	}
	if (maildir_folder_path(root, str_cstr(mailbox), dir, sizeof(dir),
				&merr) < 0) {
		fprintf(stderr, "mailring-backend: mailbox %s: %s\n", mailbox, merr.msg);
		return 1;
	}
	if (dump) {
		int r = mailbox_index_dump(dir, stdout, &error);
		if (r == 0) {
			fprintf(stderr, "mailring-backend: %s has no index\n", dir);
			return 1;
		}
		if (r < 0) {
			fprintf(stderr, "mailring-backend: %s: %s\n", dir, error);
			return 1;
		}
		return 0;
	}
	struct mailbox_settings ms = { .max_messages = (uint32_t)set->max_messages };
	if (mailbox_resync(dir, &ms, &error) < 0) {
		fprintf(stderr, "mailring-backend: resync of %s failed: %s\n", dir, error);
		return 1;
	}
	printf("resynced %s\n", dir);
	return 0;
}

int main(int argc, char **argv)
{
	struct config_cli cli = { .path = DEFAULT_CONFIG };
	struct node_settings set;
	char err[512];
	char *auth_error = NULL;
	int opt, ret;

	while ((opt = getopt(argc, argv, CONFIG_CLI_OPTS "h")) != -1) {
		if (config_cli_option(&cli, opt, optarg))
			continue;
		usage();
		return opt == 'h' ? 0 : 1;
	}
	log_init("mailring-backend", LOG_LEVEL_INFO);
	/* -t also runs the checks that span keys (config_cli_run alone
	 * would only parse) */
	bool test_only = cli.test && !cli.print_nondefault && !cli.print_all;
	if (test_only)
		cli.test = false;
	ret = config_cli_run(&cli, &node_settings_schema, &set, stdout, stderr);
	if (ret <= 0)
		return ret == 0 ? 0 : 1;
	if (node_settings_check(&set, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: %s\n", cli.path, err);
		config_free(&node_settings_schema, &set);
		return 1;
	}
	if (test_only) {
		config_free(&node_settings_schema, &set);
		return 0;
	}
	if (optind < argc) {
		log_set_level((enum log_level)set.log_level);
		ret = admin_command(&set, argc - optind, argv + optind);
		config_free(&node_settings_schema, &set);
		return ret;
	}
	config_path = cli.path;
	apply_logging(&set);
	int control_fd = -1;
	if (set.processes > 1) {
		int code = 0;
		if (!supervisor_run((unsigned int)set.processes,
				    set.admin_socket,
				    (unsigned int)set.shutdown_grace_msecs,
				    &control_fd, &code)) {
			config_free(&node_settings_schema, &set);
			return code;
		}
	}
	if (net_init() < 0 || net_ignore_sigpipe() < 0)
		fatalx("network initialisation failed");

	struct auth_settings as;
	node_settings_auth(&set, &as);
	struct auth *auth = auth_new(&as, &auth_error);
	if (auth == NULL)
		fatalx("auth: %s", auth_error != NULL ? auth_error : "failed");
	struct auth *master = NULL;
	struct auth_settings mas;
	if (node_settings_master_auth(&set, &mas)) {
		master = auth_new(&mas, &auth_error);
		if (master == NULL)
			fatalx("master_passdb: %s",
			       auth_error != NULL ? auth_error : "failed");
	}
	imap_server_set_master_auth(master);
	struct io_pool *io = NULL;
	if (set.io_threads > 0) {
		io = io_pool_new((unsigned int)set.io_threads, err, sizeof(err));
		if (io == NULL)
			fatalx("%s", err);
	}
	imap_server_set_io_pool(io);
	pop3_server_set_io_pool(io);
	lmtp_server_set_io_pool(io);
	pop3_server_set_master_auth(master);
	unsigned int nworkers = (unsigned int)set.workers;
	owner_init(set.hostname);
	struct tls_server *tls = NULL;
	if (set.ssl_cert[0] != '\0') {
		/* Dovecot writes ssl_cert = </path: accept both forms */
		const char *cert = set.ssl_cert[0] == '<' ? set.ssl_cert + 1
							   : set.ssl_cert;
		const char *key = set.ssl_key[0] == '<' ? set.ssl_key + 1
							 : set.ssl_key;
		struct tls_server_settings ts = { .cert_file = cert,
						  .key_file = key };
		char terr[TLS_ERROR_MAX];
		tls = tls_server_new(&ts, terr, sizeof(terr));
		if (tls == NULL)
			fatalx("%s", terr);
	}
	imap_server_set_tls(tls);
	pop3_server_set_tls(tls);
	char set_admin_socket[108];
	str_copy(str_cstr(set.admin_socket), set_admin_socket,
		 sizeof(set_admin_socket));
	lmtp_server_init(auth, &set);
	imap_server_init(auth, &set);
	pop3_server_init(auth, &set);

	workers = net_workers_new(worker_hooks(nworkers), err,
				  sizeof(err));
	if (workers == NULL)
		fatalx("%s", err);
	if (start_listeners(pop3_server_settings()) < 0)
		return 1;
	if (net_workers_start(workers, err, sizeof(err)) < 0)
		fatalx("%s", err);

	main_base = event_base_new();
	if (main_base == NULL)
		fatalx("event_base_new failed");
	struct net_signals *sig = net_signals_new(main_base, on_reload,
						  on_shutdown, NULL, err,
						  sizeof(err));
	if (sig == NULL)
		fatalx("%s", err);
	struct node_admin *admin = NULL;
	if (control_fd >= 0) {
		admin = node_admin_new_control(main_base, control_fd, workers);
	} else if (set_admin_socket[0] != '\0') {
		admin = node_admin_new(main_base, set_admin_socket, workers, err,
				       sizeof(err));
		if (admin == NULL)
			fatalx("%s", err);
	}
	struct net_timer *owner_timer =
	    net_timer_new(main_base, owner_timer_cb, NULL);
	net_timer_start(owner_timer, OWNER_REFRESH_SECS * 1000, true);
	log_notice("mailring-backend started: %u workers, hostname %s",
		   net_workers_count(workers), owner_hostname());
	event_base_dispatch(main_base);
	net_timer_free(&owner_timer);
	node_admin_free(&admin);

	/* the workers' loops have ended (net_workers_stop): the pool only
	 * finishes its queue, whose done calls the stopped workers drop */
	io_pool_free(&io);
	net_workers_free(&workers);
	net_signals_free(&sig);
	event_base_free(main_base);
	auth_free(&auth);
	auth_free(&master);
	pop3_server_deinit();
	imap_server_deinit();
	owner_deinit();
	tls_server_free(&tls);
	lmtp_server_deinit();
	log_notice("mailring-backend stopped");
	return 0;
}
