/*
 * mailring: the admin command line.
 *
 *   mailring [-c FILE] [--json] auth test USER [PASSWORD]
 *   mailring [-c FILE] [--json] auth lookup USER
 *
 * Like `doveadm auth test` / `doveadm auth lookup`: it reads the proxy's
 * config (passdb, username rules, backends) and asks the same auth library
 * and the same placement function the proxy uses, so what it prints is
 * what a login would do. Exit codes follow doveadm: 0 success, 67 unknown
 * user (EX_NOUSER), 77 authentication failed (EX_NOPERM), 75 temporary
 * failure (EX_TEMPFAIL), 64 usage (EX_USAGE), 78 config (EX_CONFIG).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "auth/auth.h"
#include "log.h"
#include "proxy/proxy.h"
#include "str.h"
#include "xmalloc.h"

#define DEFAULT_CONFIG "/etc/mailring/mailring-proxy.conf"
#define EX_USAGE 64
#define EX_NOUSER 67
#define EX_TEMPFAIL 75
#define EX_NOPERM 77
#define EX_CONFIG 78

struct cli {
	const char *config_path;
	bool json;
	struct proxy_config *cfg;
	struct auth *auth;
	struct event_base *base;
	int exit_code;
	bool lookup;
	const char *user;
};

static void usage(void)
{
	fprintf(stderr,
		"usage: mailring [-c config] [--json] auth test USER [PASSWORD]\n"
		"       mailring [-c config] [--json] auth lookup USER\n"
		"  -c FILE  mailring-proxy config (default " DEFAULT_CONFIG ")\n"
		"  --json   machine-readable output\n"
		"  auth test: PASSWORD is read from standard input when not given\n");
}

/* JSON string output with the escapes JSON requires. */
static void json_str(FILE *out, const char *s)
{
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(out, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(out, "\\u%04x", *p);
		else
			fputc(*p, out);
	}
	fputc('"', out);
}

/* Where the proxy would send the user: pinned by host=, else the ring's
 * ranking (first = the backend, the rest = fallbacks). */
static void print_route(struct cli *cli, const struct auth_result *res,
			FILE *out)
{
	if (res->host != NULL) {
		if (cli->json) {
			fputs(",\"route\":{\"how\":\"pinned\",\"backend\":", out);
			json_str(out, res->host);
			fputc('}', out);
		} else {
			fprintf(out, "  backend   : %s (pinned by host=)\n", res->host);
		}
		return;
	}
	uint32_t order[8];
	size_t n = proxy_config_rank(cli->cfg, LISTENER_IMAP, res->user, order, 8);
	if (cli->json) {
		fputs(",\"route\":{\"how\":\"hashed\",\"backends\":[", out);
		for (size_t i = 0; i < n; i++) {
			if (i > 0)
				fputc(',', out);
			json_str(out, cli->cfg->backends[order[i]].set->name);
		}
		fputs("]}", out);
		return;
	}
	if (n == 0) {
		fprintf(out, "  backend   : none available\n");
		return;
	}
	fprintf(out, "  backend   : %s (hashed)", cli->cfg->backends[order[0]].set->name);
	if (n > 1) {
		fputs(", fallbacks:", out);
		for (size_t i = 1; i < n; i++)
			fprintf(out, " %s", cli->cfg->backends[order[i]].set->name);
	}
	fputc('\n', out);
}

static bool secret_field(const char *key)
{
	return strcmp(key, "pass") == 0 || strcmp(key, "password") == 0;
}

static void on_result(const struct auth_result *res, void *context)
{
	struct cli *cli = context;
	FILE *out = stdout;
	const char *what = cli->lookup ? "lookup" : "auth";
	bool ok = res->code == AUTH_RESULT_OK;
	const char *user = res->user != NULL ? res->user : cli->user;

	switch (res->code) {
	case AUTH_RESULT_OK:
		cli->exit_code = 0;
		break;
	case AUTH_RESULT_UNKNOWN_USER:
		cli->exit_code = EX_NOUSER;
		break;
	case AUTH_RESULT_TEMPFAIL:
		cli->exit_code = EX_TEMPFAIL;
		break;
	default:
		cli->exit_code = EX_NOPERM;
		break;
	}
	if (cli->json) {
		fputs("{\"user\":", out);
		json_str(out, user);
		fprintf(out, ",\"result\":\"%s\"", auth_result_code_str(res->code));
		if (res->log_reason != NULL) {
			fputs(",\"reason\":", out);
			json_str(out, res->log_reason);
		}
		fputs(",\"fields\":{", out);
		for (size_t i = 0; i < auth_fields_count(res->fields); i++) {
			const char *k, *v;
			auth_fields_at(res->fields, i, &k, &v);
			if (i > 0)
				fputc(',', out);
			json_str(out, k);
			fputc(':', out);
			if (v == NULL)
				fputs("null", out);
			else
				json_str(out, secret_field(k) ? "<hidden>" : v);
		}
		fputc('}', out);
		if (ok)
			print_route(cli, res, out);
		fputs("}\n", out);
	} else {
		if (res->code == AUTH_RESULT_UNKNOWN_USER)
			fprintf(out, "passdb: %s %s failed: unknown user\n", user, what);
		else if (ok)
			fprintf(out, "passdb: %s %s succeeded\n", user, what);
		else
			fprintf(out, "passdb: %s %s failed: %s\n", user, what,
				res->log_reason != NULL ? res->log_reason :
				auth_result_code_str(res->code));
		if (auth_fields_count(res->fields) > 0) {
			fprintf(out, "extra fields:\n");
			for (size_t i = 0; i < auth_fields_count(res->fields); i++) {
				const char *k, *v;
				auth_fields_at(res->fields, i, &k, &v);
				if (v == NULL)
					fprintf(out, "  %s\n", k);
				else
					fprintf(out, "  %s=%s\n", k,
						secret_field(k) ? "<hidden>" : v);
			}
		}
		if (ok) {
			fprintf(out, "route:\n");
			print_route(cli, res, out);
		}
	}
	event_base_loopbreak(cli->base);
}

static int load(struct cli *cli)
{
	struct proxy_settings set;
	struct config_errors errors = { 0 };
	char err[512];
	char *auth_error = NULL;

	if (config_load_file(&proxy_settings_schema, cli->config_path, &set,
			     &errors) < 0) {
		for (size_t i = 0; i < errors.count; i++)
			fprintf(stderr, "%s\n", errors.lines[i]);
		config_errors_free(&errors);
		return -1;
	}
	config_errors_free(&errors);
	struct auth_settings as;
	proxy_settings_auth(&set, &as);
	/* an admin's test must not be delayed or cached like a client */
	as.failure_delay_ms = 0;
	as.penalty_enabled = false;
	as.cache_enabled = false;
	cli->auth = auth_new(&as, &auth_error);
	if (cli->auth == NULL) {
		fprintf(stderr, "auth: %s\n", auth_error != NULL ? auth_error : "failed");
		free(auth_error);
		config_free(&proxy_settings_schema, &set);
		return -1;
	}
	cli->cfg = proxy_config_build(&set, err, sizeof(err));
	if (cli->cfg == NULL) {
		fprintf(stderr, "%s: %s\n", cli->config_path, err);
		config_free(&proxy_settings_schema, &set);
		return -1;
	}
	return 0;
}

/* Reads one line (the password) from stdin, without its newline. */
static char *read_password(void)
{
	char line[1024];
	if (isatty(STDIN_FILENO))
		fprintf(stderr, "Password: ");
	if (fgets(line, sizeof(line), stdin) == NULL)
		return xstrdup("");
	line[strcspn(line, "\r\n")] = '\0';
	char *p = xstrdup(line);
	str_wipe(line, sizeof(line));
	return p;
}

static int cmd_auth(struct cli *cli, int argc, char **argv)
{
	if (argc < 2 || (strcmp(argv[0], "test") != 0 && strcmp(argv[0], "lookup") != 0)) {
		usage();
		return EX_USAGE;
	}
	cli->lookup = strcmp(argv[0], "lookup") == 0;
	if ((cli->lookup && argc != 2) || (!cli->lookup && argc > 3)) {
		usage();
		return EX_USAGE;
	}
	cli->user = argv[1];
	if (load(cli) < 0)
		return EX_CONFIG;
	char *password = NULL;
	if (!cli->lookup)
		password = argc == 3 ? xstrdup(argv[2]) : read_password();

	cli->base = event_base_new();
	struct auth_request_params params = {
		.user = str_cstr(cli->user),
		.password = password != NULL ? str_cstr(password) : STR_NULL,
		.service = "imap",
		.client_ip = "127.0.0.1",
		.flags = cli->lookup ? AUTH_REQUEST_FLAG_LOOKUP_ONLY : 0,
	};
	cli->exit_code = EX_TEMPFAIL;
	struct auth_request *req = auth_request_new(cli->auth, cli->base, &params,
						    on_result, cli);
	(void)req;
	event_base_dispatch(cli->base);
	if (password != NULL) {
		str_wipe(password, strlen(password));
		free(password);
	}
	auth_free(&cli->auth);
	event_base_free(cli->base);
	proxy_config_unref(&cli->cfg);
	return cli->exit_code;
}

int main(int argc, char **argv)
{
	struct cli cli = { .config_path = DEFAULT_CONFIG };
	int i = 1;

	log_init("mailring", LOG_LEVEL_WARNING);
	/* auth answers from worker threads: the loop must be thread-aware */
	if (net_init() < 0)
		return EX_TEMPFAIL;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			cli.config_path = argv[++i];
		else if (strcmp(argv[i], "--json") == 0)
			cli.json = true;
		else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage();
			return 0;
		} else {
			usage();
			return EX_USAGE;
		}
	}
	if (i < argc && strcmp(argv[i], "auth") == 0)
		return cmd_auth(&cli, argc - i - 1, argv + i + 1);
	usage();
	return EX_USAGE;
}
