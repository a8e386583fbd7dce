/*
 * The admin API server (see admin.h for the routes).
 *
 * One listener on the main thread's base and at most one client: while a
 * client is served the listener's event is off, so further clients wait
 * in the kernel's backlog. A client goes READING -> WRITING -> CLOSED; a
 * closed client is freed from a zero-delay timer, never inside its own
 * callback. The directing_* calls take the director's mutex and
 * proxy_kick, which must run on the main thread: they do. With the redis
 * store they answer later (DIRECTING_PENDING): the client waits
 * (WAITING) and admin_late_answer() brings the answer back to this loop;
 * one that comes after the client's timeout is dropped.
 */
#include "admin.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "directing.h"
#include "http_parse.h"
#include "json_flat.h"
#include "proxy.h"
#include "xmalloc.h"

#define ADMIN_READ_CHUNK 4096
#define ADMIN_LINE_MAX 2048
#define ADMIN_HEADERS_MAX 32
#define ADMIN_BODY_MAX 4096
/* an answer (e.g. /users of a big backend) is cut off here with a 500 */
#define ADMIN_ANSWER_MAX (64u * 1024 * 1024)
#define ADMIN_WEIGHT_MAX 1000000
#define ADMIN_USER_MAX 255
#define ADMIN_TOKEN_MIN 16
/* a TCP client must send its whole request this soon: it shares the one
 * client slot with the unix socket, and has not shown a token yet */
#define ADMIN_TCP_REQUEST_MSECS 2000

enum admin_client_state {
	ADMIN_CLIENT_READING = 0, /* reading the request */
	ADMIN_CLIENT_WAITING,     /* the director answers later (shared store) */
	ADMIN_CLIENT_WRITING,     /* writing the answer, then close */
	ADMIN_CLIENT_CLOSED,      /* waiting to be freed by the reaper */
};

struct admin_client {
	enum admin_client_state state;
	struct conn *conn;
	struct http_parser *parser;
	struct buf *out;          /* the whole answer */
	size_t out_pos;
	struct net_timer *timer;  /* ADMIN_TIMEOUT_MSECS for everything */
	uint64_t token;           /* matches a late answer to its request */
	bool tcp;                 /* came over admin_listen: token required */
	bool head;                /* the request was HEAD */
	char log_line[256];       /* "METHOD target" for the late answer's log */
};

static struct {
	struct event_base *base;
	int fd;
	struct event *accept_ev;
	struct net_timer *reaper;
	struct admin_client *client;
	char path[sizeof(((struct sockaddr_un *)NULL)->sun_path)];
	uint64_t next_token;
	/* admin_listen: TCP, every request needs the bearer token */
	int tcp_fd;
	struct event *tcp_accept_ev;
	char tcp_addr[NET_ADDR_STR_MAX];
	char *bearer;
	/* late answers come from the director's store thread */
	pthread_mutex_t late_lock;
	bool accepting_late;
} admin = { .fd = -1, .tcp_fd = -1, .late_lock = PTHREAD_MUTEX_INITIALIZER };

/* A route answered "later" (the shared store works on it). */
#define ADMIN_PENDING 0

/* ---- requests ------------------------------------------------------------ */

#define ADMIN_QUERY_MAX 4

struct admin_request {
	const struct http_message *msg;
	struct str path;
	struct {
		char name[32];
		char value[JSON_FLAT_VALUE_MAX];
	} query[ADMIN_QUERY_MAX];
	size_t query_count;
	struct json_flat body;
};

/* A route's handler: writes the body into out, returns the HTTP status. */
typedef unsigned int admin_route_fn(struct admin_request *req, struct buf *out,
				    const char **content_type_r);

static unsigned int answer_error(struct buf *out, unsigned int status,
				 const char *msg)
{
	buf_reset(out);
	buf_append_cstr(out, "{\"error\":");
	json_append_str(out, str_cstr(msg));
	buf_append_cstr(out, "}");
	return status;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decodes s into dst (dstsize with the NUL). Refuses %00, bad
 * escapes, control bytes and overflow. */
static bool percent_decode(struct str s, char *dst, size_t dstsize)
{
	size_t n = 0;

	for (size_t i = 0; i < s.len; i++) {
		unsigned char c = (unsigned char)s.p[i];
		if (c == '%') {
			int hi, lo;
			if (s.len - i < 3 || (hi = hexval(s.p[i + 1])) < 0 ||
			    (lo = hexval(s.p[i + 2])) < 0)
				return false;
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
		}
		if (c < 0x20 || c == 0x7f || n + 1 >= dstsize)
			return false;
		dst[n++] = (char)c;
	}
	dst[n] = '\0';
	return true;
}

/* Splits the target into path and query parameters. */
static bool parse_target(struct admin_request *req)
{
	struct str query;

	if (!str_split(req->msg->target, '?', &req->path, &query))
		return true;
	while (query.len > 0) {
		struct str pair, name, value;
		if (!str_split(query, '&', &pair, &query))
			query = STR_NULL;
		if (pair.len == 0)
			continue;
		if (req->query_count == ADMIN_QUERY_MAX)
			return false;
		str_split(pair, '=', &name, &value);
		if (!percent_decode(name, req->query[req->query_count].name,
				    sizeof(req->query[0].name)) ||
		    !percent_decode(value, req->query[req->query_count].value,
				    sizeof(req->query[0].value)))
			return false;
		req->query_count++;
	}
	return true;
}

static const char *query_get(const struct admin_request *req, const char *name)
{
	for (size_t i = 0; i < req->query_count; i++) {
		if (strcmp(req->query[i].name, name) == 0)
			return req->query[i].value;
	}
	return NULL;
}

/* A name parameter: present, not empty, shorter than max. */
static bool valid_name(const char *s, size_t max)
{
	size_t n = s != NULL ? strlen(s) : 0;
	return n > 0 && n < max;
}

static bool valid_backend(const char *s)
{
	return valid_name(s, DIRECTOR_NAME_MAX);
}

static bool valid_user(const char *s)
{
	return valid_name(s, ADMIN_USER_MAX + 1);
}

/* The status of a directing_* error, from its JSON text. */
static bool body_has(const struct buf *out, const char *text)
{
	return memmem(out->data, out->len, text, strlen(text)) != NULL;
}

static unsigned int directing_error_status(const struct buf *out)
{
	if (body_has(out, "unknown backend"))
		return 404;
	if (body_has(out, "exists") || body_has(out, "under way") ||
	    body_has(out, "config file"))
		return 409;
	if (body_has(out, "not an IP"))
		return 400;
	return 503; /* the ring store is unreachable, or the proxy stops */
}

/* directing_* answers: 0 = ok (200), -1 = their JSON error,
 * DIRECTING_PENDING = the answer comes through admin_late_answer. */
static unsigned int answer_status(int ret, const struct buf *out)
{
	if (ret == DIRECTING_PENDING)
		return ADMIN_PENDING;
	return ret == 0 ? 200 : directing_error_status(out);
}

static const char *body_str(const struct admin_request *req, const char *key)
{
	const char *v = NULL;
	return json_flat_get_str(&req->body, key, &v) == 1 ? v : NULL;
}

static unsigned int route_status(struct admin_request *req, struct buf *out,
				 const char **ct)
{
	(void)req;
	(void)ct;
	return answer_status(directing_status(out), out);
}

static unsigned int route_ring(struct admin_request *req, struct buf *out,
			       const char **ct)
{
	(void)req;
	(void)ct;
	return answer_status(directing_ring_status(out), out);
}

static unsigned int route_map(struct admin_request *req, struct buf *out,
			      const char **ct)
{
	const char *user = query_get(req, "user");
	(void)ct;
	if (!valid_user(user))
		return answer_error(out, 400, "parameter user missing or invalid");
	return answer_status(directing_map(user, out), out);
}

static unsigned int route_users(struct admin_request *req, struct buf *out,
				const char **ct)
{
	const char *backend = query_get(req, "backend");
	(void)ct;
	if (!valid_backend(backend))
		return answer_error(out, 400, "parameter backend missing or invalid");
	return answer_status(directing_users(backend, out), out);
}

static unsigned int route_update(struct admin_request *req, struct buf *out,
				 const char **ct)
{
	const char *backend = body_str(req, "backend");
	uint64_t weight;
	(void)ct;
	if (!valid_backend(backend))
		return answer_error(out, 400, "field backend missing or invalid");
	if (json_flat_get_u64(&req->body, "weight", &weight) != 1 ||
	    weight > ADMIN_WEIGHT_MAX)
		return answer_error(out, 400,
				    "field weight missing or not 0..1000000");
	return answer_status(directing_set_weight(backend, (unsigned int)weight, out), out);
}

/* The POST routes whose body names one backend. */
enum backend_op {
	BACKEND_OP_UP = 0,
	BACKEND_OP_DOWN,
	BACKEND_OP_DRAIN,
	BACKEND_OP_FLUSH,
	BACKEND_OP_REMOVE,
};

static unsigned int backend_op(struct admin_request *req, struct buf *out,
			       enum backend_op op)
{
	const char *backend = body_str(req, "backend");
	int ret = -1;

	if (!valid_backend(backend))
		return answer_error(out, 400, "field backend missing or invalid");
	switch (op) {
	case BACKEND_OP_UP:
	case BACKEND_OP_DOWN:
		ret = directing_set_up(backend, op == BACKEND_OP_UP, out);
		break;
	case BACKEND_OP_DRAIN:
		ret = directing_set_weight(backend, 0, out);
		break;
	case BACKEND_OP_FLUSH:
		ret = directing_flush(backend, admin.base, out);
		break;
	case BACKEND_OP_REMOVE:
		ret = directing_remove(backend, out);
		break;
	}
	return answer_status(ret, out);
}

#define BACKEND_ROUTE(fn, op)                                                  \
	static unsigned int fn(struct admin_request *req, struct buf *out,     \
			       const char **ct)                                \
	{                                                                      \
		(void)ct;                                                      \
		return backend_op(req, out, op);                               \
	}
BACKEND_ROUTE(route_up, BACKEND_OP_UP)
BACKEND_ROUTE(route_down, BACKEND_OP_DOWN)
BACKEND_ROUTE(route_drain, BACKEND_OP_DRAIN)
BACKEND_ROUTE(route_flush, BACKEND_OP_FLUSH)
BACKEND_ROUTE(route_remove, BACKEND_OP_REMOVE)

static unsigned int route_move(struct admin_request *req, struct buf *out,
			       const char **ct)
{
	const char *user = body_str(req, "user");
	const char *backend = body_str(req, "backend");
	(void)ct;
	if (!valid_user(user))
		return answer_error(out, 400, "field user missing or invalid");
	if (!valid_backend(backend))
		return answer_error(out, 400, "field backend missing or invalid");
	return answer_status(directing_move(user, backend, out), out);
}

static unsigned int route_kick(struct admin_request *req, struct buf *out,
			       const char **ct)
{
	const char *user = body_str(req, "user");
	(void)ct;
	if (!valid_user(user))
		return answer_error(out, 400, "field user missing or invalid");
	return answer_status(directing_kick(user, out), out);
}

static unsigned int route_add(struct admin_request *req, struct buf *out,
			      const char **ct)
{
	const char *backend = body_str(req, "backend");
	uint64_t weight = 100;
	(void)ct;
	if (!valid_backend(backend))
		return answer_error(out, 400, "field backend missing or invalid");
	if (json_flat_get_u64(&req->body, "weight", &weight) == -1 ||
	    weight > ADMIN_WEIGHT_MAX)
		return answer_error(out, 400, "field weight not 0..1000000");
	return answer_status(directing_add(backend, (unsigned int)weight, out), out);
}

/* Prometheus label value: \\, \" and \n escaped. */
static void metric_label(struct buf *out, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\' || *s == '"')
			buf_printf(out, "\\%c", *s);
		else if (*s == '\n')
			buf_append_cstr(out, "\\n");
		else
			buf_append_byte(out, (uint8_t)*s);
	}
}

struct metric_def {
	const char *name;
	const char *field; /* in a backend of directing_status's JSON */
	const char *help;
};

/* Prometheus gauges per backend, read from the director directly. */
#define METRICS_MAX_BACKENDS 1024

static unsigned int route_metrics(struct admin_request *req, struct buf *out,
				  const char **ct)
{
	static const struct {
		const char *name;
		const char *help;
	} gauges[] = {
		{ "mailring_backend_up", "1 when the backend takes users" },
		{ "mailring_backend_weight", "placement weight (0 = drained)" },
		{ "mailring_backend_users", "users mapped to the backend" },
		{ "mailring_backend_sessions",
		  "sessions open on the backend through this proxy" },
	};
	struct director_backend_info *info =
		xcalloc(METRICS_MAX_BACKENDS, sizeof(*info));
	size_t users = 0;
	size_t n = directing_backends(info, METRICS_MAX_BACKENDS, &users);
	(void)req;

	*ct = "text/plain; version=0.0.4; charset=utf-8";
	buf_printf(out,
		   "# HELP mailring_connections Client connections open now.\n"
		   "# TYPE mailring_connections gauge\n"
		   "mailring_connections %u\n"
		   "# HELP mailring_users Users with a mapping.\n"
		   "# TYPE mailring_users gauge\n"
		   "mailring_users %zu\n",
		   atomic_load(&proxy.connections), users);
	buf_printf(out,
		   "# HELP mailring_logins_total Logins by result.\n"
		   "# TYPE mailring_logins_total counter\n"
		   "mailring_logins_total{result=\"ok\"} %llu\n"
		   "mailring_logins_total{result=\"failed\"} %llu\n"
		   "mailring_logins_total{result=\"nologin\"} %llu\n"
		   "mailring_logins_total{result=\"tempfail\"} %llu\n"
		   "mailring_logins_total{result=\"unavailable\"} %llu\n",
		   (unsigned long long)atomic_load(&proxy.logins_ok),
		   (unsigned long long)atomic_load(&proxy.logins_failed),
		   (unsigned long long)atomic_load(&proxy.logins_nologin),
		   (unsigned long long)atomic_load(&proxy.logins_tempfail),
		   (unsigned long long)atomic_load(&proxy.logins_unavailable));
	unsigned long long lookups, failures, calls, latency;
	directing_store_metrics(&lookups, &failures, &calls, &latency);
	buf_printf(out,
		   "# HELP mailring_ring_degraded 1 while the shared store is "
		   "unreachable (serving from cached mappings).\n"
		   "# TYPE mailring_ring_degraded gauge\n"
		   "mailring_ring_degraded %d\n"
		   "# HELP mailring_ring_lookups_total Login lookups in the shared "
		   "store.\n"
		   "# TYPE mailring_ring_lookups_total counter\n"
		   "mailring_ring_lookups_total %llu\n"
		   "# HELP mailring_ring_lookup_failures_total Lookups that ended "
		   "without a backend (none, or a move that timed out).\n"
		   "# TYPE mailring_ring_lookup_failures_total counter\n"
		   "mailring_ring_lookup_failures_total %llu\n"
		   "# HELP mailring_ring_store_latency_seconds Round trips of login "
		   "lookups to the shared store.\n"
		   "# TYPE mailring_ring_store_latency_seconds summary\n"
		   "mailring_ring_store_latency_seconds_sum %llu.%06llu\n"
		   "mailring_ring_store_latency_seconds_count %llu\n",
		   directing_degraded() ? 1 : 0, lookups, failures,
		   latency / 1000000, latency % 1000000, calls);
	for (size_t m = 0; m < sizeof(gauges) / sizeof(gauges[0]); m++) {
		buf_printf(out, "# HELP %s %s.\n# TYPE %s gauge\n", gauges[m].name,
			   gauges[m].help, gauges[m].name);
		for (size_t i = 0; i < n; i++) {
			unsigned long long v =
				m == 0 ? (info[i].state == DIRECTOR_BACKEND_UP) :
				m == 1 ? info[i].weight :
				m == 2 ? info[i].users : info[i].sessions;
			buf_printf(out, "%s{backend=\"", gauges[m].name);
			metric_label(out, info[i].name);
			buf_printf(out, "\"} %llu\n", v);
		}
	}
	free(info);
	return 200;
}

struct admin_route {
	const char *method;
	const char *path;
	admin_route_fn *fn;
};

static const struct admin_route routes[] = {
	{ "GET", "/status", route_status },
	{ "GET", "/ring", route_ring },
	{ "GET", "/map", route_map },
	{ "GET", "/users", route_users },
	{ "GET", "/metrics", route_metrics },
	{ "POST", "/update", route_update },
	{ "POST", "/up", route_up },
	{ "POST", "/down", route_down },
	{ "POST", "/drain", route_drain },
	{ "POST", "/flush", route_flush },
	{ "POST", "/move", route_move },
	{ "POST", "/kick", route_kick },
	{ "POST", "/add", route_add },
	{ "POST", "/remove", route_remove },
};

/* Routes msg; the answer's body goes to out. Returns the status. */
static unsigned int admin_dispatch(const struct http_message *msg,
				   struct buf *out, const char **ct,
				   const char **allow_r)
{
	struct admin_request *req = xcalloc(1, sizeof(*req));
	const struct admin_route *route = NULL;
	unsigned int status;
	bool path_known = false;

	req->msg = msg;
	if (!parse_target(req)) {
		status = answer_error(out, 400, "bad query string");
		goto out;
	}
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (!str_eq(req->path, str_cstr(routes[i].path)))
			continue;
		path_known = true;
		*allow_r = routes[i].method;
		if (str_eq(msg->method, str_cstr(routes[i].method)) ||
		    (strcmp(routes[i].method, "GET") == 0 &&
		     str_eq(msg->method, STR("HEAD"))))
			route = &routes[i];
	}
	if (route == NULL) {
		status = path_known ?
				 answer_error(out, 405, "method not allowed") :
				 answer_error(out, 404, "no such route");
		goto out;
	}
	if (strcmp(route->method, "POST") == 0) {
		const char *error;
		size_t pos;
		if (json_flat_parse(msg->body, &req->body, &error, &pos) < 0) {
			char text[160];
			if (str_printf(text, sizeof(text), "bad JSON body at byte %zu: %s",
				       pos, error) < 0)
				text[0] = '\0';
			status = answer_error(out, 400, text);
			goto out;
		}
	}
	status = route->fn(req, out, ct);
	if (buf_room(out) < 64)
		status = answer_error(out, 500, "answer too large");
out:
	free(req);
	return status;
}

/* ---- the connection --------------------------------------------------------- */

static void admin_client_close(struct admin_client *c)
{
	if (c->state == ADMIN_CLIENT_CLOSED)
		return;
	c->state = ADMIN_CLIENT_CLOSED;
	conn_want(c->conn, false, false);
	net_timer_stop(c->timer);
	net_timer_start(admin.reaper, 0, false);
}

static void admin_client_free(struct admin_client **cp)
{
	struct admin_client *c = *cp;
	if (c == NULL)
		return;
	conn_free(&c->conn);
	http_parser_free(&c->parser);
	buf_free(&c->out);
	net_timer_free(&c->timer);
	free(c);
	*cp = NULL;
}

static void admin_reap(void *context)
{
	(void)context;
	if (admin.client != NULL && admin.client->state == ADMIN_CLIENT_CLOSED) {
		admin_client_free(&admin.client);
		if (admin.accept_ev != NULL)
			event_add(admin.accept_ev, NULL);
		if (admin.tcp_accept_ev != NULL)
			event_add(admin.tcp_accept_ev, NULL);
	}
}

static void admin_client_timeout(void *context)
{
	struct admin_client *c = context;
	log_warnx("admin: client timed out (%s)",
		  c->state == ADMIN_CLIENT_READING ? "reading" : "writing");
	admin_client_close(c);
}

/* Builds the whole answer in c->out and starts writing it. */
static void admin_answer(struct admin_client *c, unsigned int status,
			 const char *ct, const char *allow, const struct buf *body,
			 bool head)
{
	c->out = buf_new(body->len + 256, body->len + 512);
	buf_printf(c->out,
		   "HTTP/1.1 %u %s\r\nContent-Type: %s\r\n"
		   "Content-Length: %zu\r\nConnection: close\r\n"
		   "Cache-Control: no-store\r\n",
		   status, http_status_text(status), ct, body->len);
	if (status == 405 && allow != NULL)
		buf_printf(c->out, "Allow: %s\r\n", allow);
	buf_append_cstr(c->out, "\r\n");
	if (!head)
		buf_append(c->out, body->data, body->len);
	c->out_pos = 0;
	c->state = ADMIN_CLIENT_WRITING;
	conn_want(c->conn, false, true);
}

/* "Authorization: Bearer TOKEN", compared in constant time. */
static bool bearer_ok(const struct http_message *msg)
{
	size_t want = strlen(admin.bearer);
	for (size_t i = 0; i < msg->header_count; i++) {
		const struct http_header *h = &msg->headers[i];
		if (!str_eq_nocase(h->name, STR("Authorization")))
			continue;
		struct str v = h->value;
		if (v.len != 7 + want || !str_has_prefix_nocase(v, STR("Bearer ")))
			return false;
		unsigned char diff = 0;
		for (size_t k = 0; k < want; k++)
			diff |= (unsigned char)(v.p[7 + k] ^ admin.bearer[k]);
		return diff == 0;
	}
	return false;
}

static void admin_request_done(struct admin_client *c,
			       const struct http_message *msg)
{
	struct buf *body = buf_new(4096, ADMIN_ANSWER_MAX);
	const char *ct = "application/json";
	const char *allow = NULL;
	char method[HTTP_METHOD_MAX_LEN + 1], target[128];

	if (c->tcp && !bearer_ok(msg)) {
		log_warnx("admin: %s %s over TCP without the right bearer token: "
			  "refused", str_sanitize(msg->method, method, sizeof(method)),
			  str_sanitize(msg->target, target, sizeof(target)));
		answer_error(body, 401, "missing or wrong bearer token");
		buf_append_byte(body, '\n');
		admin_answer(c, 401, "application/json", NULL, body, false);
		buf_free(&body);
		return;
	}
	if (c->tcp)
		net_timer_start(c->timer, ADMIN_TIMEOUT_MSECS, false);
	c->token = ++admin.next_token;
	c->head = str_eq(msg->method, STR("HEAD"));
	directing_set_admin_token(c->token);
	unsigned int status = admin_dispatch(msg, body, &ct, &allow);
	if (status == ADMIN_PENDING) {
		/* the director answers through admin_late_answer() */
		str_printf(c->log_line, sizeof(c->log_line), "%s %s",
			   str_sanitize(msg->method, method, sizeof(method)),
			   str_sanitize(msg->target, target, sizeof(target)));
		c->state = ADMIN_CLIENT_WAITING;
		conn_want(c->conn, false, false);
		buf_free(&body);
		return;
	}
	log_info("admin: %s %s status=%u bytes=%zu",
		 str_sanitize(msg->method, method, sizeof(method)),
		 str_sanitize(msg->target, target, sizeof(target)), status,
		 body->len);
	if (ct[0] == 'a' && (body->len == 0 || body->data[body->len - 1] != '\n'))
		buf_append_byte(body, '\n');
	admin_answer(c, status, ct, allow, body, str_eq(msg->method, STR("HEAD")));
	buf_free(&body);
}

struct late_answer {
	uint64_t token;
	int ret;
	struct buf *body;
};

static void late_answer_deliver(evutil_socket_t fd, short what, void *context)
{
	struct late_answer *la = context;
	struct admin_client *c = admin.client;
	(void)fd;
	(void)what;

	if (c != NULL && c->state == ADMIN_CLIENT_WAITING && c->token == la->token) {
		unsigned int status = la->ret == 0 ? 200 :
				      directing_error_status(la->body);
		log_info("admin: %s status=%u bytes=%zu", c->log_line, status,
			 la->body->len);
		if (la->body->len == 0 || la->body->data[la->body->len - 1] != '\n')
			buf_append_byte(la->body, '\n');
		admin_answer(c, status, "application/json", NULL, la->body, c->head);
	}
	/* else the client timed out or went away meanwhile */
	buf_free(&la->body);
	free(la);
}

/* The director's hook: called on any thread with the answer of a
 * request that returned DIRECTING_PENDING. */
static void admin_late_answer(uint64_t token, int ret, const struct buf *out)
{
	struct late_answer *la = xcalloc(1, sizeof(*la));
	struct timeval now = { 0, 0 };

	la->token = token;
	la->ret = ret;
	la->body = buf_new(out->len + 16, out->len + 64);
	buf_append(la->body, out->data, out->len);
	pthread_mutex_lock(&admin.late_lock);
	bool queued = admin.accepting_late &&
		      event_base_once(admin.base, -1, EV_TIMEOUT, late_answer_deliver,
				      la, &now) == 0;
	pthread_mutex_unlock(&admin.late_lock);
	if (!queued) {
		buf_free(&la->body);
		free(la);
	}
}

static void admin_read(struct admin_client *c)
{
	uint8_t data[ADMIN_READ_CHUNK];

	ssize_t n = conn_read(c->conn, data, sizeof(data));
	if (n == CONN_AGAIN)
		return;
	if (n == CONN_EOF || n == CONN_FAILED) {
		admin_client_close(c);
		return;
	}
	size_t consumed;
	struct http_message msg;
	struct http_parse_error err;
	enum http_parse_result r =
		http_parser_feed(c->parser, data, (size_t)n, &consumed, &msg, &err);
	if (r == HTTP_PARSE_MORE)
		return;
	if (r == HTTP_PARSE_DONE) {
		/* one request per connection: anything after it is ignored */
		admin_request_done(c, &msg);
		return;
	}
	struct buf *body = buf_new(256, 1024);
	log_warnx("admin: bad request: %s (offset %llu)", err.msg,
		  (unsigned long long)err.offset);
	answer_error(body, err.status, err.msg);
	buf_append_byte(body, '\n');
	admin_answer(c, err.status, "application/json", NULL, body, false);
	buf_free(&body);
}

static void admin_write(struct admin_client *c)
{
	while (c->out_pos < c->out->len) {
		ssize_t n = conn_write(c->conn, c->out->data + c->out_pos,
				       c->out->len - c->out_pos);
		if (n == CONN_AGAIN)
			return;
		if (n <= 0) {
			admin_client_close(c);
			return;
		}
		c->out_pos += (size_t)n;
	}
	conn_shutdown_write(c->conn);
	admin_client_close(c);
}

static void admin_client_event(struct conn *conn, enum conn_event ev,
			       void *context)
{
	struct admin_client *c = context;
	(void)conn;

	if (c->state == ADMIN_CLIENT_CLOSED)
		return;
	switch (ev) {
	case CONN_EV_READABLE:
		if (c->state == ADMIN_CLIENT_READING)
			admin_read(c);
		break;
	case CONN_EV_WRITABLE:
		if (c->state == ADMIN_CLIENT_WRITING)
			admin_write(c);
		break;
	case CONN_EV_TLS_READY:
	case CONN_EV_ERROR:
		admin_client_close(c);
		break;
	}
}

static void admin_accept(evutil_socket_t fd, short what, void *context)
{
	bool tcp = context != NULL;
	(void)what;

	if (admin.client != NULL)
		return;
	int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (cfd == -1) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
		    errno != ECONNABORTED)
			log_warn("admin: accept(%s) failed", admin.path);
		return;
	}
	struct admin_client *c = xcalloc(1, sizeof(*c));
	struct http_parser_limits limits = {
		.max_line_len = ADMIN_LINE_MAX,
		.max_headers = ADMIN_HEADERS_MAX,
		.max_body = ADMIN_BODY_MAX,
	};
	c->state = ADMIN_CLIENT_READING;
	c->parser = http_parser_new(HTTP_PARSE_MODE_REQUEST, &limits);
	c->conn = conn_new(admin.base, cfd, admin_client_event, c);
	c->timer = net_timer_new(admin.base, admin_client_timeout, c);
	net_timer_start(c->timer, tcp ? ADMIN_TCP_REQUEST_MSECS : ADMIN_TIMEOUT_MSECS,
			false);
	c->tcp = tcp;
	admin.client = c;
	/* one client at a time: the others wait in the backlog */
	if (admin.accept_ev != NULL)
		event_del(admin.accept_ev);
	if (admin.tcp_accept_ev != NULL)
		event_del(admin.tcp_accept_ev);
	conn_want(c->conn, true, false);
}

/* ---- start and stop ------------------------------------------------------- */

static void admin_start_common(struct event_base *main_base)
{
	admin.base = main_base;
	admin.reaper = net_timer_new(main_base, admin_reap, NULL);
	pthread_mutex_lock(&admin.late_lock);
	admin.accepting_late = true;
	pthread_mutex_unlock(&admin.late_lock);
	directing_set_answer_hook(admin_late_answer);
}

/* admin_listen (TCP) with admin_token: for tools on other hosts. */
static int admin_start_tcp(struct event_base *main_base, char *err,
			   size_t errsize)
{
	struct proxy_config *cfg = proxy_config_ref();
	const char *listen_on = cfg->set.admin_listen;
	const char *token = cfg->set.admin_token;
	struct net_addr addr;
	const char *error;
	int ret = -1;

	if (listen_on == NULL || listen_on[0] == '\0') {
		ret = 0;
		goto out;
	}
	if (token == NULL || strlen(token) < ADMIN_TOKEN_MIN) {
		str_printf(err, errsize, "admin_listen needs admin_token (at least "
			   "%d characters)", ADMIN_TOKEN_MIN);
		goto out;
	}
	if (net_addr_parse(listen_on, 0, &addr, &error) < 0) {
		str_printf(err, errsize, "admin_listen %s: %s", listen_on, error);
		goto out;
	}
	admin.tcp_fd = net_listen(&addr, 16, 0, err, errsize);
	if (admin.tcp_fd < 0)
		goto out;
	struct net_addr bound;
	if (net_get_local_addr(admin.tcp_fd, &bound) == 0)
		net_addr_str(&bound, admin.tcp_addr, sizeof(admin.tcp_addr));
	admin.bearer = xstrdup(token);
	admin.tcp_accept_ev = event_new(main_base, admin.tcp_fd, EV_READ | EV_PERSIST,
					admin_accept, (void *)&admin.tcp_fd);
	if (admin.tcp_accept_ev == NULL)
		xalloc_fail_abort();
	event_add(admin.tcp_accept_ev, NULL);
	log_info("admin API listening on %s (TCP, bearer token)", admin.tcp_addr);
	ret = 0;
out:
	proxy_config_unref(&cfg);
	return ret;
}

int admin_start(struct event_base *main_base, const char *path, char *err,
		size_t errsize)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;

	if (admin_start_tcp(main_base, err, errsize) < 0)
		return -1;
	if (path == NULL || path[0] == '\0') {
		if (admin.tcp_fd != -1)
			admin_start_common(main_base);
		return 0;
	}
	if (admin.fd != -1) {
		str_printf(err, errsize, "admin: already started");
		return -1;
	}
	if (!str_copy(str_cstr(path), sun.sun_path, sizeof(sun.sun_path)) ||
	    !str_copy(str_cstr(path), admin.path, sizeof(admin.path))) {
		str_printf(err, errsize, "admin_socket %s: path too long", path);
		return -1;
	}
	/* a stale socket from an earlier run; never remove anything else */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			str_printf(err, errsize,
				   "admin_socket %s: exists and is not a socket", path);
			return -1;
		}
		if (unlink(path) == -1) {
			str_printf(err, errsize, "admin_socket: unlink(%s) failed: %s",
				   path, strerror(errno));
			return -1;
		}
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		str_printf(err, errsize, "admin_socket: socket() failed: %s",
			   strerror(errno));
		return -1;
	}
	/* bind, restrict, then listen: nobody can connect before chmod */
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		str_printf(err, errsize, "admin_socket: bind(%s) failed: %s", path,
			   strerror(errno));
		close(fd);
		return -1;
	}
	if (chmod(path, 0600) == -1 || listen(fd, 16) == -1) {
		str_printf(err, errsize, "admin_socket %s: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		return -1;
	}
	admin.base = main_base;
	admin.fd = fd;
	admin.accept_ev = event_new(main_base, fd, EV_READ | EV_PERSIST,
				    admin_accept, NULL);
	if (admin.accept_ev == NULL)
		xalloc_fail_abort();
	event_add(admin.accept_ev, NULL);
	admin_start_common(main_base);
	log_info("admin API listening on %s", path);
	return 0;
}

void admin_stop(void)
{
	if (admin.tcp_fd != -1) {
		event_free(admin.tcp_accept_ev);
		admin.tcp_accept_ev = NULL;
		close(admin.tcp_fd);
		admin.tcp_fd = -1;
		xfree(&admin.bearer);
		if (admin.fd == -1) {
			directing_set_answer_hook(NULL);
			pthread_mutex_lock(&admin.late_lock);
			admin.accepting_late = false;
			pthread_mutex_unlock(&admin.late_lock);
			admin_client_free(&admin.client);
			net_timer_free(&admin.reaper);
		}
	}
	if (admin.fd == -1)
		return;
	directing_set_answer_hook(NULL);
	pthread_mutex_lock(&admin.late_lock);
	admin.accepting_late = false;
	pthread_mutex_unlock(&admin.late_lock);
	admin_client_free(&admin.client);
	net_timer_free(&admin.reaper);
	if (admin.accept_ev != NULL) {
		event_free(admin.accept_ev);
		admin.accept_ev = NULL;
	}
	close(admin.fd);
	admin.fd = -1;
	unlink(admin.path);
	admin.path[0] = '\0';
}
