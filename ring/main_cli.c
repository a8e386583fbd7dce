/*
 * mailring: the admin command line.
 *
 *   mailring [-c FILE] [--json] auth test USER [PASSWORD]
 *   mailring [-c FILE] [--json] auth lookup USER
 *   mailring [-s SOCKET] [--json] status | map USER | users BACKEND |
 *            update BACKEND WEIGHT | up BACKEND | down BACKEND |
 *            drain BACKEND | flush BACKEND | move USER BACKEND | kick USER
 *
 * `auth` is like `doveadm auth test` / `doveadm auth lookup`: it reads the
 * proxy's config (passdb, username rules, backends) and asks the same auth
 * library and the same placement function the proxy uses, so what it
 * prints is what a login would do. Exit codes follow doveadm: 0 success,
 * 67 unknown user (EX_NOUSER), 77 authentication failed (EX_NOPERM), 75
 * temporary failure (EX_TEMPFAIL), 64 usage (EX_USAGE), 78 config
 * (EX_CONFIG).
 *
 * The director commands are like `doveadm director ...`: they talk HTTP
 * to the running proxy's admin socket (admin_socket; proxy/admin.h has
 * the API) and print its JSON answer as is (--json) or as text and
 * tables. Exit codes: 0 ok, 64 usage, 65 the API answered an error
 * (EX_DATAERR), 69 the socket cannot be reached (EX_UNAVAILABLE), 76 the
 * answer was not HTTP we understand (EX_PROTOCOL).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "auth/auth.h"
#include "fdio.h"
#include "http_parse.h"
#include "json_flat.h"
#include "log.h"
#include "proxy/proxy.h"
#include "ring/director.h"
#include "str.h"
#include "xmalloc.h"

#define DEFAULT_CONFIG "/etc/mailring/mailring-proxy.conf"
#define DEFAULT_ADMIN_SOCKET "/run/mailring/admin.sock"
#define EX_USAGE 64
#define EX_DATAERR 65
#define EX_UNAVAILABLE 69
#define EX_PROTOCOL 76
#define EX_NOUSER 67
#define EX_TEMPFAIL 75
#define EX_NOPERM 77
#define EX_CONFIG 78

struct cli {
	const char *config_path;
	const char *socket_path;
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
		"       mailring [-s socket] [--json] COMMAND\n"
		"  -c FILE  mailring-proxy config (default " DEFAULT_CONFIG ")\n"
		"  -s PATH  the proxy's admin socket (default " DEFAULT_ADMIN_SOCKET ")\n"
		"  --json   machine-readable output\n"
		"  auth test: PASSWORD is read from standard input when not given\n"
		"commands (through the admin socket):\n"
		"  status                  backends: state, weight, tag, users, sessions\n"
		"  map USER                the backend USER goes to, and why\n"
		"  users BACKEND           users mapped to BACKEND\n"
		"  update BACKEND WEIGHT   set the weight (0 = drained)\n"
		"  up BACKEND | down BACKEND\n"
		"  drain BACKEND           weight 0: new users avoid it\n"
		"  flush BACKEND           drop its mappings, close its sessions\n"
		"  move USER BACKEND       close USER's sessions, map USER to BACKEND\n"
		"  kick USER               close USER's sessions\n"
		"  add HOST [WEIGHT]       a new backend at IP address HOST (weight 100)\n"
		"  remove BACKEND          a backend added with add: close its sessions, drop it\n"
		"  ring status             the store, proxies alive, degraded or not\n");
}

/* A JSON string on out, escaped by the one JSON writer (json_flat). */
static void json_str(FILE *out, const char *s)
{
	struct buf *b = buf_new(64, 1024 * 1024);
	if (json_append_str(b, str_cstr(s)) == 0)
		fwrite(b->data, 1, b->len, out);
	buf_free(&b);
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
	/* the proxy's own placement: a director over the configured
	 * backends (no mappings: this process has none) */
	struct director *d = director_new(cli->cfg->set.user_expire_msecs);
	for (size_t i = 0; i < cli->cfg->backend_count; i++) {
		const struct backend_settings *bs = cli->cfg->backends[i].set;
		director_backend_add(d, bs->name, (uint32_t)bs->weight, bs->tag);
	}
	char first[DIRECTOR_NAME_MAX], fb[7][DIRECTOR_NAME_MAX];
	size_t nfb = 0;
	bool found = director_route(d, proxy_user_key(&cli->cfg->set, res->user),
				    res->director_tag, 0, first, fb, 7,
				    &nfb) != DIRECTOR_ROUTE_NONE;
	director_free(&d);
	if (cli->json) {
		fputs(",\"route\":{\"how\":\"hashed\",\"backends\":[", out);
		if (found)
			json_str(out, first);
		for (size_t i = 0; found && i < nfb; i++) {
			fputc(',', out);
			json_str(out, fb[i]);
		}
		fputs("]}", out);
		return;
	}
	if (!found) {
		fprintf(out, "  backend   : none available\n");
		return;
	}
	fprintf(out, "  backend   : %s (hashed)", first);
	if (nfb > 0) {
		fputs(", fallbacks:", out);
		for (size_t i = 0; i < nfb; i++)
			fprintf(out, " %s", fb[i]);
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

/* ---- director commands: HTTP over the admin socket ------------------------ */

#define ADMIN_IO_TIMEOUT_SECS 30
#define ADMIN_ANSWER_MAX (64u * 1024 * 1024)
#define ADMIN_REQUEST_MAX 8192

/* Appends s percent-encoded (everything but unreserved characters). */
static int url_encode(struct buf *out, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		int r;
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("-._~@", *p) != NULL) {
			r = buf_append_byte(out, *p);
		} else {
			char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };
			r = buf_append(out, e, 3);
		}
		if (r < 0)
			return -1;
	}
	return 0;
}


struct admin_answer {
	unsigned int status;
	struct buf *body;
};

/* Sends one request (body NULL for GET) and reads the answer into *ans.
 * Returns 0, or an exit code (EX_UNAVAILABLE, EX_PROTOCOL) after printing
 * why to stderr. */
static int admin_call(const struct cli *cli, const char *method,
		      const struct buf *target, const struct buf *body,
		      struct admin_answer *ans)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = ADMIN_IO_TIMEOUT_SECS };
	int fd, ret = EX_PROTOCOL;

	if (!str_copy(str_cstr(cli->socket_path), sun.sun_path,
		      sizeof(sun.sun_path))) {
		fprintf(stderr, "mailring: %s: socket path too long\n",
			cli->socket_path);
		return EX_UNAVAILABLE;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		fprintf(stderr, "mailring: cannot reach the proxy at %s: %s\n",
			cli->socket_path, strerror(errno));
		if (fd != -1)
			close(fd);
		return EX_UNAVAILABLE;
	}
	struct buf *req = buf_new(512, ADMIN_REQUEST_MAX);
	buf_printf(req, "%s %s HTTP/1.1\r\nHost: localhost\r\n"
		   "User-Agent: mailring\r\nAccept: application/json\r\n"
		   "Connection: close\r\n", method, buf_cstr(target));
	if (body != NULL)
		buf_printf(req, "Content-Type: application/json\r\n"
			   "Content-Length: %zu\r\n", body->len);
	buf_append_cstr(req, "\r\n");
	if ((body != NULL && buf_append(req, body->data, body->len) < 0) ||
	    buf_room(req) == 0) {
		fprintf(stderr, "mailring: request too large\n");
		buf_free(&req);
		close(fd);
		return EX_USAGE;
	}
	if (fd_write_all(fd, req->data, req->len) < 0) {
		fprintf(stderr, "mailring: writing to %s failed: %s\n",
			cli->socket_path, strerror(errno));
		buf_free(&req);
		close(fd);
		return EX_UNAVAILABLE;
	}
	buf_free(&req);

	struct http_parser_limits limits = {
		.max_line_len = HTTP_LINE_MAX_DEFAULT,
		.max_headers = HTTP_HEADERS_MAX_DEFAULT,
		.max_body = ADMIN_ANSWER_MAX,
	};
	struct http_parser *p = http_parser_new(HTTP_PARSE_MODE_RESPONSE, &limits);
	uint8_t data[16384];
	for (;;) {
		ssize_t n = read(fd, data, sizeof(data));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			fprintf(stderr, "mailring: reading from %s failed: %s\n",
				cli->socket_path,
				errno == EAGAIN ? "timed out" : strerror(errno));
			ret = EX_UNAVAILABLE;
			break;
		}
		if (n == 0) {
			fprintf(stderr, "mailring: %s closed before a complete answer\n",
				cli->socket_path);
			break;
		}
		size_t consumed;
		struct http_message msg;
		struct http_parse_error err;
		enum http_parse_result r = http_parser_feed(p, data, (size_t)n,
							    &consumed, &msg, &err);
		if (r == HTTP_PARSE_MORE)
			continue;
		if (r == HTTP_PARSE_ERROR) {
			fprintf(stderr, "mailring: bad answer from %s: %s\n",
				cli->socket_path, err.msg);
			break;
		}
		ans->status = msg.status;
		ans->body = buf_new(msg.body.len + 1, msg.body.len + 1);
		buf_append_str(ans->body, msg.body);
		ret = 0;
		break;
	}
	http_parser_free(&p);
	close(fd);
	return ret;
}

/* A cell of a table: strings and numbers as they are, null as "-". */
static const char *cell_text(const struct json_value *v, char *tmp, size_t size)
{
	if (v == NULL)
		return "";
	switch (v->type) {
	case JSON_STRING:
		if (v->text[0] == '\0')
			return "-";
		return str_sanitize(str_cstr(v->text), tmp, size);
	case JSON_NUMBER:
		return v->text;
	case JSON_TRUE:
		return "yes";
	case JSON_FALSE:
		return "no";
	case JSON_NULL:
		return "-";
	case JSON_ARRAY: {
		/* a list of scalars: space separated */
		size_t n = 0;
		tmp[0] = '\0';
		for (size_t i = 0; i < v->count; i++) {
			char one[128];
			const char *t = v->items[i].type == JSON_ARRAY ||
						v->items[i].type == JSON_OBJECT ?
					"..." : cell_text(&v->items[i], one, sizeof(one));
			int w = snprintf(tmp + n, size - n, "%s%s", i > 0 ? " " : "", t);
			if (w < 0 || (size_t)w >= size - n)
				break;
			n += (size_t)w;
		}
		return n == 0 ? "-" : tmp;
	}
	case JSON_OBJECT:
		return "...";
	}
	return "";
}

/* An array of objects as a table: the columns are the first object's
 * keys, upper-cased. */
static void print_table(const struct json_value *arr, FILE *out)
{
	const struct json_value *first = arr->count > 0 ? &arr->items[0] : NULL;
	char tmp[256];

	if (first == NULL || first->type != JSON_OBJECT) {
		fprintf(out, "%s\n", arr->count == 0 ? "(none)" :
				     cell_text(arr, tmp, sizeof(tmp)));
		return;
	}
	size_t ncol = first->count;
	size_t *width = xcalloc(ncol, sizeof(*width));
	for (size_t c = 0; c < ncol; c++)
		width[c] = strlen(first->keys[c]);
	for (size_t r = 0; r < arr->count; r++) {
		for (size_t c = 0; c < ncol; c++) {
			size_t w = strlen(cell_text(json_tree_get(&arr->items[r],
								  first->keys[c]),
						    tmp, sizeof(tmp)));
			if (w > width[c])
				width[c] = w;
		}
	}
	for (size_t c = 0; c < ncol; c++) {
		for (const char *k = first->keys[c]; *k != '\0'; k++)
			fputc(*k >= 'a' && *k <= 'z' ? *k - 'a' + 'A' : *k, out);
		if (c + 1 < ncol)
			fprintf(out, "%*s", (int)(width[c] - strlen(first->keys[c]) + 2), "");
	}
	fputc('\n', out);
	for (size_t r = 0; r < arr->count; r++) {
		for (size_t c = 0; c < ncol; c++) {
			const char *t = cell_text(json_tree_get(&arr->items[r],
								first->keys[c]),
						  tmp, sizeof(tmp));
			if (c + 1 < ncol)
				fprintf(out, "%-*s  ", (int)width[c], t);
			else
				fprintf(out, "%s", t);
		}
		fputc('\n', out);
	}
	free(width);
}

/* An answer as text: scalars as "key: value" lines, then each array of
 * objects as a table. */
static void print_answer(const struct json_value *v, FILE *out)
{
	char tmp[256];

	if (v->type == JSON_ARRAY) {
		print_table(v, out);
		return;
	}
	if (v->type != JSON_OBJECT) {
		fprintf(out, "%s\n", cell_text(v, tmp, sizeof(tmp)));
		return;
	}
	size_t kw = 0;
	for (size_t i = 0; i < v->count; i++) {
		if (!(v->items[i].type == JSON_ARRAY && v->items[i].count > 0 &&
		      v->items[i].items[0].type == JSON_OBJECT) &&
		    strlen(v->keys[i]) > kw)
			kw = strlen(v->keys[i]);
	}
	for (size_t i = 0; i < v->count; i++) {
		const struct json_value *x = &v->items[i];
		if (x->type == JSON_ARRAY && x->count > 0 &&
		    x->items[0].type == JSON_OBJECT)
			continue;
		fprintf(out, "%-*s: %s\n", (int)kw, v->keys[i],
			x->type == JSON_ARRAY && x->count == 0 ?
				"(none)" : cell_text(x, tmp, sizeof(tmp)));
	}
	for (size_t i = 0; i < v->count; i++) {
		const struct json_value *x = &v->items[i];
		if (x->type == JSON_ARRAY && x->count > 0 &&
		    x->items[0].type == JSON_OBJECT) {
			fputc('\n', out);
			print_table(x, out);
		}
	}
}

/* Prints the answer (as is with --json) and maps its status to the exit
 * code. */
static int admin_report(const struct cli *cli, const struct admin_answer *ans)
{
	const char *error;
	size_t pos;
	bool ok = ans->status >= 200 && ans->status < 300;

	if (cli->json) {
		fwrite(ans->body->data, 1, ans->body->len, stdout);
		if (ans->body->len == 0 || ans->body->data[ans->body->len - 1] != '\n')
			fputc('\n', stdout);
		return ok ? 0 : EX_DATAERR;
	}
	struct json_value *v = json_tree_parse(buf_str(ans->body), &error, &pos);
	if (v == NULL) {
		fprintf(stderr, "mailring: answer %u is not JSON (byte %zu: %s)\n",
			ans->status, pos, error);
		return EX_PROTOCOL;
	}
	if (!ok) {
		const struct json_value *e = json_tree_get(v, "error");
		char tmp[256];
		fprintf(stderr, "mailring: %s (HTTP %u)\n",
			e != NULL && e->type == JSON_STRING ?
				str_sanitize(str_cstr(e->text), tmp, sizeof(tmp)) :
				"error",
			ans->status);
	} else {
		print_answer(v, stdout);
	}
	json_tree_free(&v);
	return ok ? 0 : EX_DATAERR;
}

struct admin_command {
	const char *name;
	const char *method;  /* GET: args go to the query; POST: to JSON */
	const char *path;
	const char *args[2]; /* names of the positional arguments */
	size_t nargs;
	size_t optional;     /* how many of the last ones may be left out */
};

static const struct admin_command admin_commands[] = {
	{ "status", "GET", "/status", { NULL, NULL }, 0, 0 },
	{ "map", "GET", "/map", { "user", NULL }, 1, 0 },
	{ "users", "GET", "/users", { "backend", NULL }, 1, 0 },
	{ "update", "POST", "/update", { "backend", "weight" }, 2, 0 },
	{ "up", "POST", "/up", { "backend", NULL }, 1, 0 },
	{ "down", "POST", "/down", { "backend", NULL }, 1, 0 },
	{ "drain", "POST", "/drain", { "backend", NULL }, 1, 0 },
	{ "flush", "POST", "/flush", { "backend", NULL }, 1, 0 },
	{ "move", "POST", "/move", { "user", "backend" }, 2, 0 },
	{ "kick", "POST", "/kick", { "user", NULL }, 1, 0 },
	{ "ring status", "GET", "/ring", { NULL, NULL }, 0, 0 },
	{ "add", "POST", "/add", { "backend", "weight" }, 2, 1 },
	{ "remove", "POST", "/remove", { "backend", NULL }, 1, 0 },
};

static const struct admin_command *admin_command_find(const char *name)
{
	for (size_t i = 0; i < sizeof(admin_commands) / sizeof(admin_commands[0]); i++) {
		if (strcmp(admin_commands[i].name, name) == 0)
			return &admin_commands[i];
	}
	return NULL;
}

static int cmd_admin(struct cli *cli, const struct admin_command *cmd, int argc,
		     char **argv)
{
	struct admin_answer ans = { 0 };
	struct buf *target = buf_new(128, 2048);
	struct buf *body = NULL;
	int ret = EX_USAGE;

	if ((size_t)argc > cmd->nargs || (size_t)argc < cmd->nargs - cmd->optional) {
		fprintf(stderr, "usage: mailring %s", cmd->name);
		for (size_t i = 0; i < cmd->nargs; i++)
			fprintf(stderr, i >= cmd->nargs - cmd->optional ? " [%s]" : " %s",
				strcmp(cmd->args[i], "user") == 0 ? "USER" :
				strcmp(cmd->args[i], "weight") == 0 ? "WEIGHT" :
				strcmp(cmd->name, "add") == 0 ? "HOST" : "BACKEND");
		fputc('\n', stderr);
		goto out;
	}
	buf_append_cstr(target, cmd->path);
	if (strcmp(cmd->method, "GET") == 0) {
		for (size_t i = 0; i < (size_t)argc; i++) {
			buf_printf(target, "%c%s=", i == 0 ? '?' : '&', cmd->args[i]);
			if (url_encode(target, argv[i]) < 0) {
				fprintf(stderr, "mailring: argument too long\n");
				goto out;
			}
		}
	} else {
		body = buf_new(256, ADMIN_REQUEST_MAX / 2);
		buf_append_byte(body, '{');
		for (size_t i = 0; i < (size_t)argc; i++) {
			if (i > 0)
				buf_append_byte(body, ',');
			json_append_str(body, str_cstr(cmd->args[i]));
			buf_append_byte(body, ':');
			if (strcmp(cmd->args[i], "weight") == 0) {
				uint64_t w;
				if (!str_to_u64(str_cstr(argv[i]), 1000000, &w)) {
					fprintf(stderr, "mailring: WEIGHT must be 0..1000000\n");
					goto out;
				}
				buf_printf(body, "%llu", (unsigned long long)w);
			} else if (json_append_str(body, str_cstr(argv[i])) < 0) {
				fprintf(stderr, "mailring: argument too long\n");
				goto out;
			}
		}
		if (buf_append_byte(body, '}') < 0) {
			fprintf(stderr, "mailring: arguments too long\n");
			goto out;
		}
	}
	ret = admin_call(cli, cmd->method, target, body, &ans);
	if (ret == 0)
		ret = admin_report(cli, &ans);
out:
	buf_free(&ans.body);
	buf_free(&body);
	buf_free(&target);
	return ret;
}

int main(int argc, char **argv)
{
	struct cli cli = { .config_path = DEFAULT_CONFIG,
			   .socket_path = DEFAULT_ADMIN_SOCKET };
	int i = 1;

	log_init("mailring", LOG_LEVEL_WARNING);
	/* auth answers from worker threads: the loop must be thread-aware */
	if (net_init() < 0)
		return EX_TEMPFAIL;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			cli.config_path = argv[++i];
		else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc)
			cli.socket_path = argv[++i];
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
	/* the one two-word command: `mailring ring status` */
	if (i + 1 < argc && strcmp(argv[i], "ring") == 0 &&
	    strcmp(argv[i + 1], "status") == 0) {
		i++;
		argv[i] = (char *)"ring status";
	}
	const struct admin_command *cmd = i < argc ? admin_command_find(argv[i]) : NULL;
	if (cmd != NULL) {
		/* options may also follow the command: mailring status --json */
		int n = 0;
		for (int j = i + 1; j < argc; j++) {
			if (strcmp(argv[j], "--json") == 0)
				cli.json = true;
			else if (strcmp(argv[j], "-s") == 0 && j + 1 < argc)
				cli.socket_path = argv[++j];
			else
				argv[i + 1 + n++] = argv[j];
		}
		return cmd_admin(&cli, cmd, n, argv + i + 1);
	}
	usage();
	return EX_USAGE;
}
