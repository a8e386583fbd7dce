/* The asynchronous auth service: see auth.h for the contract.
 *
 * Threads and ownership:
 * - A request is created, answered and freed on its loop's thread. Between
 *   being queued and being posted back it belongs to one worker.
 * - queue_lock guards the queue, the counters and the refcount-free parts of
 *   struct auth a loop may touch after auth_free(); state_lock guards the
 *   cache, the penalty table and the passdb generation.
 * - Completion: the worker (or the loop itself, for answers that need no
 *   worker) fills the result and calls event_active(ev, EV_READ). That is
 *   its last access to the request. The loop's callback frees it. The same
 *   event carries a long keep-alive timeout so a pending request keeps its
 *   loop running; a callback without EV_READ is only that timer.
 * - struct auth is reference-counted by its requests, so cancelling (which
 *   takes queue_lock) stays safe after auth_free(). */

#include "auth.h"

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "auth_hash.h"
#include "auth_nets.h"
#include "auth_user.h"
#include "passdb.h"
#include "password_scheme.h"
#include "xmalloc.h"

#define AUTH_MAX_WORKERS 64
#define AUTH_DEFAULT_QUEUE_MAX 1024
#define AUTH_DEFAULT_FAILURE_DELAY_MS 2000
#define AUTH_KEEPALIVE_SECS 3600
#define AUTH_REASON_MAX 256

struct auth {
	atomic_uint refcount; /* auth_free's + one per live request */
	struct auth_settings set;
	const struct passdb_driver *driver;
	void *driver_ctx;
	struct auth_user_rules *user_rules;
	uint8_t checksum_key[AUTH_HASH_KEY_SIZE];

	pthread_mutex_t state_lock;
	struct auth_cache *cache;     /* NULL when disabled */
	struct auth_penalty *penalty; /* NULL when disabled */
	uint64_t seen_generation;

	pthread_mutex_t queue_lock;
	pthread_cond_t queue_cond;
	struct auth_request *queue_head, *queue_tail;
	bool stopping;
	struct auth_stats stats;
	pthread_t *threads;
	unsigned int nthreads;
};

struct auth_request {
	struct auth *auth;
	struct event *ev;
	auth_callback_t *callback;
	void *context;
	struct auth_request *qprev, *qnext;
	bool queued; /* under queue_lock */
	atomic_bool cancelled;
	unsigned int flags;

	char user[AUTH_USER_MAX_LEN + 1]; /* normalised; "" when invalid */
	char *password;                   /* owned copy, wiped */
	size_t password_len;
	uint32_t pw_checksum;
	char *service, *client_ip, *session_id;
	uint64_t start_ms;
	uint32_t penalty_ms;

	struct auth_result result;
	char *canonical_user;
	char *warning;
	char reason[AUTH_REASON_MAX];
	struct auth_fields *fields, *userdb_fields;
};

static uint64_t default_now_ms(void *context)
{
	struct timespec ts;
	(void)context;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t auth_now(const struct auth *auth)
{
	return auth->set.now_ms(auth->set.now_context);
}

void auth_settings_init(struct auth_settings *set)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	memset(set, 0, sizeof(*set));
	set->passdb_driver = "passwd-file";
	set->passdb_args = NULL;
	set->username_chars = NULL;
	set->username_format = NULL;
	set->username_max_len = AUTH_USER_DEFAULT_MAX_LEN;
	set->workers = cpus < 2 ? 2 : cpus > 16 ? 16 : (unsigned int)cpus;
	set->queue_max = AUTH_DEFAULT_QUEUE_MAX;
	set->failure_delay_ms = AUTH_DEFAULT_FAILURE_DELAY_MS;
	set->cache_enabled = true;
	auth_cache_settings_init(&set->cache);
	set->penalty_enabled = true;
	auth_penalty_settings_init(&set->penalty);
	set->now_ms = NULL;
	set->now_context = NULL;
}

const char *auth_result_code_str(enum auth_result_code code)
{
	switch (code) {
	case AUTH_RESULT_OK:
		return "ok";
	case AUTH_RESULT_FAILED:
		return "failed";
	case AUTH_RESULT_UNKNOWN_USER:
		return "unknown user";
	case AUTH_RESULT_NOLOGIN:
		return "nologin";
	case AUTH_RESULT_TEMPFAIL:
		return "tempfail";
	}
	return "?";
}

/* ---- lifetime ------------------------------------------------------------ */

static void auth_unref(struct auth *auth)
{
	if (atomic_fetch_sub(&auth->refcount, 1) != 1)
		return;
	pthread_mutex_destroy(&auth->state_lock);
	pthread_mutex_destroy(&auth->queue_lock);
	pthread_cond_destroy(&auth->queue_cond);
	free(auth);
}

static void request_free(struct auth_request *req)
{
	event_free(req->ev);
	if (req->password != NULL) {
		str_wipe(req->password, req->password_len);
		free(req->password);
	}
	free(req->service);
	free(req->client_ip);
	free(req->session_id);
	free(req->canonical_user);
	free(req->warning);
	auth_fields_free(&req->fields);
	auth_fields_free(&req->userdb_fields);
	struct auth *auth = req->auth;
	str_wipe(req, sizeof(*req));
	free(req);
	auth_unref(auth);
}

static void request_complete_cb(evutil_socket_t fd, short what, void *arg)
{
	struct auth_request *req = arg;
	(void)fd;

	if ((what & EV_READ) == 0) {
		/* only the keep-alive timer */
		struct timeval tv = {AUTH_KEEPALIVE_SECS, 0};
		event_add(req->ev, &tv);
		return;
	}
	if (!atomic_load(&req->cancelled))
		req->callback(&req->result, req->context);
	request_free(req);
}

/* ---- results ------------------------------------------------------------- */

static void set_reason(struct auth_request *req, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_reason(struct auth_request *req, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	/* truncation is fine for a log text */
	(void)vsnprintf(req->reason, sizeof(req->reason), fmt, ap);
	va_end(ap);
	req->result.log_reason = req->reason;
}

static void fail(struct auth_request *req, enum auth_result_code code,
		 const char *reason)
{
	req->result.code = code;
	set_reason(req, "%s", reason);
}

static bool field_value_safe(const char *v)
{
	for (const unsigned char *p = (const unsigned char *)v; *p != '\0';
	     p++) {
		if (auth_user_char_forbidden(*p))
			return false;
	}
	return true;
}

/* Checks the fields of a user whose password matched (or was not needed)
 * and sets the final code and the proxy fields. */
static void apply_policy(struct auth_request *req)
{
	struct auth_result *r = &req->result;
	const struct auth_fields *f = req->fields;
	const char *v, *error;
	uint64_t port;

	r->nopassword = auth_fields_has(f, "nopassword");
	r->nodelay = auth_fields_has(f, "nodelay");
	v = auth_fields_get(f, "allow_nets");
	if (v != NULL) {
		int m = auth_nets_match(v, req->client_ip, &error);
		if (m < 0) {
			set_reason(req, "passdb: invalid field: %s", error);
			r->code = AUTH_RESULT_TEMPFAIL;
			return;
		}
		if (m == 0) {
			fail(req, AUTH_RESULT_FAILED,
			     "client IP not in the user's allow_nets");
			return;
		}
	}
	v = auth_fields_get(f, "user");
	if (v != NULL) {
		if (v[0] == '\0' || strlen(v) > AUTH_USER_MAX_LEN ||
		    !field_value_safe(v)) {
			fail(req, AUTH_RESULT_TEMPFAIL,
			     "passdb: invalid user= field");
			return;
		}
		free(req->canonical_user);
		req->canonical_user = xstrdup(v);
	}
	r->host = auth_fields_get(f, "host");
	r->destuser = auth_fields_get(f, "destuser");
	r->director_tag = auth_fields_get(f, "director_tag");
	if ((r->host != NULL && !field_value_safe(r->host)) ||
	    (r->destuser != NULL && !field_value_safe(r->destuser)) ||
	    (r->director_tag != NULL && !field_value_safe(r->director_tag))) {
		fail(req, AUTH_RESULT_TEMPFAIL,
		     "passdb: host=, destuser= or director_tag= contains an "
		     "invalid character");
		return;
	}
	if (r->host != NULL && r->host[0] == '\0')
		r->host = NULL;
	r->pass = auth_fields_get(f, "pass");
	v = auth_fields_get(f, "port");
	if (v != NULL) {
		if (!str_to_u64(str_cstr(v), 65535, &port) || port == 0) {
			fail(req, AUTH_RESULT_TEMPFAIL,
			     "passdb: invalid port= field");
			return;
		}
		r->port = (uint16_t)port;
	}
	r->proxy = auth_fields_has(f, "proxy");
	r->proxy_maybe = auth_fields_has(f, "proxy_maybe");
	if (auth_fields_has(f, "nologin")) {
		r->code = AUTH_RESULT_NOLOGIN;
		r->nologin_reason = auth_fields_get(f, "reason");
		set_reason(req, "nologin");
		return;
	}
	r->code = AUTH_RESULT_OK;
	r->log_reason = NULL;
}

/* Records penalties, computes the delay, fills the result's pointers and
 * posts the request back to its loop. The last access to req. */
static void request_finish(struct auth *auth, struct auth_request *req)
{
	struct auth_result *r = &req->result;
	bool lookup_only = (req->flags & AUTH_REQUEST_FLAG_LOOKUP_ONLY) != 0;
	uint64_t now = auth == NULL ? req->start_ms : auth_now(auth);
	uint64_t target = 0, elapsed;
	const char *user = req->user[0] == '\0' ? NULL : req->user;

	if (auth != NULL && !lookup_only) {
		pthread_mutex_lock(&auth->state_lock);
		if (auth->penalty != NULL) {
			if (r->code == AUTH_RESULT_OK)
				auth_penalty_success(auth->penalty,
						     req->client_ip, user, now);
			else if (r->code == AUTH_RESULT_FAILED ||
				 r->code == AUTH_RESULT_UNKNOWN_USER)
				auth_penalty_failure(auth->penalty,
						     req->client_ip, user,
						     req->pw_checksum, now);
		}
		pthread_mutex_unlock(&auth->state_lock);
		target = req->penalty_ms;
		bool skip_delay = r->nodelay && r->code == AUTH_RESULT_NOLOGIN;
		if (r->code != AUTH_RESULT_OK && !skip_delay &&
		    auth->set.failure_delay_ms > target)
			target = auth->set.failure_delay_ms;
	}
	elapsed = now >= req->start_ms ? now - req->start_ms : 0;
	r->delay_ms = target > elapsed ? (uint32_t)(target - elapsed) : 0;

	if (req->password != NULL) {
		str_wipe(req->password, req->password_len);
		free(req->password);
		req->password = NULL;
	}
	if (req->fields == NULL)
		req->fields = auth_fields_new();
	if (req->userdb_fields == NULL)
		req->userdb_fields = auth_fields_new();
	r->fields = req->fields;
	r->userdb_fields = req->userdb_fields;
	if (r->code != AUTH_RESULT_OK && r->code != AUTH_RESULT_NOLOGIN) {
		/* proxy fields only describe a successful login */
		r->host = r->destuser = r->pass = r->director_tag = NULL;
		r->port = 0;
		r->proxy = r->proxy_maybe = r->nopassword = false;
	}
	if (req->canonical_user != NULL)
		r->user = req->canonical_user;
	else
		r->user = user;
	r->warning = req->warning;

	struct event *ev = req->ev;
	event_active(ev, EV_READ, 0);
}

/* ---- the worker side ----------------------------------------------------- */

static void check_generation(struct auth *auth)
{
	if (auth->driver->generation == NULL)
		return;
	uint64_t g = auth->driver->generation(auth->driver_ctx);
	pthread_mutex_lock(&auth->state_lock);
	if (g != auth->seen_generation) {
		auth->seen_generation = g;
		if (auth->cache != NULL)
			auth_cache_clear(auth->cache);
	}
	pthread_mutex_unlock(&auth->state_lock);
}

static void process(struct auth *auth, struct auth_request *req)
{
	bool lookup_only = (req->flags & AUTH_REQUEST_FLAG_LOOKUP_ONLY) != 0;
	struct passdb_request pr = {
	    .user = req->user,
	    .service = req->service,
	    .client_ip = req->client_ip,
	    .session_id = req->session_id,
	    .now_ms = auth_now(auth),
	};
	struct passdb_entry entry;
	char *error = NULL;
	const char *perror = NULL;
	bool verified = false;

	memset(&entry, 0, sizeof(entry));
	enum passdb_result pres =
	    auth->driver->lookup(auth->driver_ctx, &pr, &entry, &error);
	req->warning = entry.warning;
	entry.warning = NULL;
	check_generation(auth);

	switch (pres) {
	case PASSDB_TEMPFAIL:
		req->result.code = AUTH_RESULT_TEMPFAIL;
		set_reason(req, "passdb lookup failed: %s",
			   error == NULL ? "unknown error" : error);
		break;
	case PASSDB_USER_UNKNOWN:
		fail(req, AUTH_RESULT_UNKNOWN_USER, "unknown user");
		pthread_mutex_lock(&auth->state_lock);
		if (auth->cache != NULL)
			auth_cache_put_unknown(auth->cache, req->user,
					       pr.now_ms);
		pthread_mutex_unlock(&auth->state_lock);
		break;
	case PASSDB_USER_FOUND:
		if (lookup_only ||
		    auth_fields_has(entry.fields, "nopassword")) {
			verified = true;
		} else if (req->password_len == 0) {
			fail(req, AUTH_RESULT_FAILED, "empty password");
		} else if (entry.password == NULL ||
			   entry.password[0] == '\0') {
			fail(req, AUTH_RESULT_FAILED,
			     "no password set for the user");
		} else {
			enum password_result pv =
			    password_verify(req->password, entry.password,
					    entry.default_scheme, &perror);
			if (pv == PASSWORD_MATCH) {
				verified = true;
			} else if (pv == PASSWORD_MISMATCH) {
				fail(req, AUTH_RESULT_FAILED,
				     "password mismatch");
			} else {
				req->result.code = AUTH_RESULT_TEMPFAIL;
				set_reason(req,
					   "passdb: cannot verify the "
					   "user's password: %s (%s)",
					   perror == NULL ? "?" : perror,
					   password_result_str(pv));
			}
		}
		if (verified) {
			if (!lookup_only) {
				pthread_mutex_lock(&auth->state_lock);
				if (auth->cache != NULL)
					auth_cache_put(
					    auth->cache, req->user,
					    req->password, entry.fields,
					    entry.userdb_fields, pr.now_ms);
				pthread_mutex_unlock(&auth->state_lock);
			}
			req->fields = entry.fields;
			req->userdb_fields = entry.userdb_fields;
			entry.fields = entry.userdb_fields = NULL;
			apply_policy(req);
		}
		break;
	}
	free(error);
	passdb_entry_clear(&entry);
	request_finish(auth, req);
}

static void *worker_main(void *arg)
{
	struct auth *auth = arg;

	pthread_mutex_lock(&auth->queue_lock);
	for (;;) {
		while (!auth->stopping && auth->queue_head == NULL)
			pthread_cond_wait(&auth->queue_cond, &auth->queue_lock);
		if (auth->stopping)
			break;
		struct auth_request *req = auth->queue_head;
		auth->queue_head = req->qnext;
		if (auth->queue_head != NULL)
			auth->queue_head->qprev = NULL;
		else
			auth->queue_tail = NULL;
		req->qnext = req->qprev = NULL;
		req->queued = false;
		auth->stats.queued--;
		auth->stats.running++;
		pthread_mutex_unlock(&auth->queue_lock);

		if (atomic_load(&req->cancelled)) {
			/* nobody wants the answer: skip the work */
			request_finish(NULL, req);
		} else {
			process(auth, req);
		}

		pthread_mutex_lock(&auth->queue_lock);
		auth->stats.running--;
		auth->stats.worker_done++;
	}
	pthread_mutex_unlock(&auth->queue_lock);
	return NULL;
}

/* ---- the loop side ------------------------------------------------------- */

static char *xstrdup_or_null(const char *s)
{
	return s == NULL ? NULL : xstrdup(s);
}

/* Validates the request's inputs; false when it already has its result. */
static bool request_check_input(struct auth *auth, struct auth_request *req,
				const struct auth_request_params *params)
{
	const char *error;
	bool lookup_only = (req->flags & AUTH_REQUEST_FLAG_LOOKUP_ONLY) != 0;

	if (auth_user_normalize(auth->user_rules, params->user, req->user,
				sizeof(req->user), &error) < 0) {
		/* The name itself is not repeated: the caller's log line
		 * carries the user (escaped once), and a reason never holds
		 * client bytes, so it is safe to print as it is. */
		req->result.code = AUTH_RESULT_FAILED;
		set_reason(req, "invalid user name: %s", error);
		return false;
	}
	if (params->authzid.len > 0 && !str_eq(params->authzid, params->user)) {
		fail(req, AUTH_RESULT_FAILED,
		     "authorization identity differs from the user (master "
		     "users are not supported)");
		return false;
	}
	if (lookup_only)
		return true;
	if (params->password.len > 0 &&
	    memchr(params->password.p, '\0', params->password.len) != NULL) {
		fail(req, AUTH_RESULT_FAILED, "password contains NUL");
		return false;
	}
	if (params->password.len > PASSWORD_MAX_LEN) {
		fail(req, AUTH_RESULT_FAILED, "password too long");
		return false;
	}
	req->password_len = params->password.len;
	req->password = xmalloc(req->password_len + 1);
	if (req->password_len > 0)
		memcpy(req->password, params->password.p, req->password_len);
	req->password[req->password_len] = '\0';
	req->pw_checksum =
	    (uint32_t)auth_hash(auth->checksum_key, req->password,
				req->password_len) |
	    1;
	return true;
}

struct auth_request *auth_request_new(struct auth *auth,
				      struct event_base *base,
				      const struct auth_request_params *params,
				      auth_callback_t *callback, void *context)
{
	struct auth_request *req = xcalloc(1, sizeof(*req));
	struct timeval keepalive = {AUTH_KEEPALIVE_SECS, 0};
	bool lookup_only = (params->flags & AUTH_REQUEST_FLAG_LOOKUP_ONLY) != 0;
	bool done = false;

	atomic_fetch_add(&auth->refcount, 1);
	req->auth = auth;
	req->callback = callback;
	req->context = context;
	req->flags = params->flags;
	atomic_init(&req->cancelled, false);
	req->ev = event_new(base, -1, 0, request_complete_cb, req);
	if (req->ev == NULL || event_add(req->ev, &keepalive) < 0) {
		fprintf(stderr, "fatal: auth: event_new/event_add failed\n");
		abort();
	}
	req->service = xstrdup(params->service == NULL ? "" : params->service);
	req->client_ip = xstrdup_or_null(params->client_ip);
	req->session_id = xstrdup_or_null(params->session_id);
	req->start_ms = auth_now(auth);

	pthread_mutex_lock(&auth->queue_lock);
	auth->stats.requests++;
	pthread_mutex_unlock(&auth->queue_lock);

	if (!request_check_input(auth, req, params))
		done = true;

	if (!done) {
		enum auth_cache_result cr = AUTH_CACHE_MISS;
		pthread_mutex_lock(&auth->state_lock);
		if (auth->penalty != NULL && !lookup_only)
			req->penalty_ms =
			    auth_penalty_get(auth->penalty, req->client_ip,
					     req->user, req->start_ms);
		if (auth->cache != NULL)
			cr = auth_cache_lookup(
			    auth->cache, req->user,
			    lookup_only ? NULL : req->password, req->start_ms,
			    &req->fields, &req->userdb_fields);
		pthread_mutex_unlock(&auth->state_lock);
		if (cr == AUTH_CACHE_HIT) {
			req->result.cached = true;
			apply_policy(req);
			done = true;
		} else if (cr == AUTH_CACHE_HIT_UNKNOWN) {
			req->result.cached = true;
			fail(req, AUTH_RESULT_UNKNOWN_USER,
			     "unknown user (cached)");
			done = true;
		}
		if (done) {
			pthread_mutex_lock(&auth->queue_lock);
			auth->stats.cache_hits++;
			pthread_mutex_unlock(&auth->queue_lock);
		}
	} else if (auth->penalty != NULL && !lookup_only) {
		pthread_mutex_lock(&auth->state_lock);
		req->penalty_ms = auth_penalty_get(
		    auth->penalty, req->client_ip, NULL, req->start_ms);
		pthread_mutex_unlock(&auth->state_lock);
	}

	if (!done) {
		pthread_mutex_lock(&auth->queue_lock);
		if (auth->stopping) {
			fail(req, AUTH_RESULT_TEMPFAIL,
			     "auth service is shutting down");
			done = true;
		} else if (auth->stats.queued >= auth->set.queue_max) {
			fail(req, AUTH_RESULT_TEMPFAIL, "auth queue is full");
			auth->stats.queue_full++;
			done = true;
		} else {
			req->qprev = auth->queue_tail;
			req->qnext = NULL;
			if (auth->queue_tail != NULL)
				auth->queue_tail->qnext = req;
			else
				auth->queue_head = req;
			auth->queue_tail = req;
			req->queued = true;
			auth->stats.queued++;
			pthread_cond_signal(&auth->queue_cond);
		}
		pthread_mutex_unlock(&auth->queue_lock);
	}
	if (done)
		request_finish(auth, req);
	return req;
}

void auth_request_cancel(struct auth_request **reqp)
{
	struct auth_request *req = *reqp;
	bool removed = false;

	if (req == NULL)
		return;
	*reqp = NULL;
	struct auth *auth = req->auth;
	atomic_store(&req->cancelled, true);
	pthread_mutex_lock(&auth->queue_lock);
	auth->stats.cancelled++;
	if (req->queued) {
		if (req->qprev != NULL)
			req->qprev->qnext = req->qnext;
		else
			auth->queue_head = req->qnext;
		if (req->qnext != NULL)
			req->qnext->qprev = req->qprev;
		else
			auth->queue_tail = req->qprev;
		req->queued = false;
		auth->stats.queued--;
		removed = true;
	}
	pthread_mutex_unlock(&auth->queue_lock);
	/* Not removed: a worker has it or it was already posted; the loop
	 * callback sees the cancelled flag and only frees it. */
	if (removed)
		request_free(req);
}

void auth_get_stats(struct auth *auth, struct auth_stats *stats_r)
{
	pthread_mutex_lock(&auth->queue_lock);
	*stats_r = auth->stats;
	pthread_mutex_unlock(&auth->queue_lock);
}

/* ---- service ------------------------------------------------------------- */

static void auth_release(struct auth *auth)
{
	if (auth->driver != NULL && auth->driver_ctx != NULL)
		auth->driver->deinit(&auth->driver_ctx);
	auth_user_rules_free(&auth->user_rules);
	auth_cache_free(&auth->cache);
	auth_penalty_free(&auth->penalty);
	free(auth->threads);
	auth->threads = NULL;
}

struct auth *auth_new(const struct auth_settings *set, char **error_r)
{
	const char *error;
	struct auth *auth = xcalloc(1, sizeof(*auth));

	*error_r = NULL;
	atomic_init(&auth->refcount, 1);
	auth->set = *set;
	auth->set.passdb_args = NULL; /* not kept */
	auth->set.passdb_driver = NULL;
	auth->set.username_chars = NULL;
	auth->set.username_format = NULL;
	if (auth->set.now_ms == NULL)
		auth->set.now_ms = default_now_ms;
	pthread_mutex_init(&auth->state_lock, NULL);
	pthread_mutex_init(&auth->queue_lock, NULL);
	pthread_cond_init(&auth->queue_cond, NULL);
	auth_hash_random_key(auth->checksum_key);

	if (set->workers < 1 || set->workers > AUTH_MAX_WORKERS) {
		*error_r = xstrdup("auth: workers must be 1..64");
		goto fail;
	}
	if (set->queue_max < 1) {
		*error_r = xstrdup("auth: queue_max must be at least 1");
		goto fail;
	}
	auth->user_rules =
	    auth_user_rules_new(set->username_chars, set->username_format,
				set->username_max_len, &error);
	if (auth->user_rules == NULL) {
		*error_r = xstrdup(error);
		goto fail;
	}
	if (set->penalty_enabled) {
		auth->penalty = auth_penalty_new(&set->penalty, &error);
		if (auth->penalty == NULL) {
			*error_r = xstrdup(error);
			goto fail;
		}
	}
	if (set->cache_enabled)
		auth->cache = auth_cache_new(&set->cache);

	auth->driver = passdb_driver_find(set->passdb_driver);
	if (auth->driver == NULL) {
		*error_r = xstrdup("auth: unknown passdb driver");
		goto fail;
	}
	if (auth->driver->init(set->passdb_args == NULL ? "" : set->passdb_args,
			       &auth->driver_ctx, error_r) < 0) {
		auth->driver_ctx = NULL;
		goto fail;
	}
	if (auth->driver->generation != NULL)
		auth->seen_generation =
		    auth->driver->generation(auth->driver_ctx);

	/* workers get no signals: the loops' threads handle them */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	auth->threads = xcalloc(set->workers, sizeof(pthread_t));
	for (unsigned int i = 0; i < set->workers; i++) {
		if (pthread_create(&auth->threads[i], NULL, worker_main,
				   auth) != 0) {
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			*error_r = xstrdup("auth: cannot start worker threads");
			pthread_mutex_lock(&auth->queue_lock);
			auth->stopping = true;
			pthread_cond_broadcast(&auth->queue_cond);
			pthread_mutex_unlock(&auth->queue_lock);
			for (unsigned int j = 0; j < auth->nthreads; j++)
				pthread_join(auth->threads[j], NULL);
			goto fail;
		}
		auth->nthreads++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return auth;
fail:
	auth_release(auth);
	auth_unref(auth);
	return NULL;
}

void auth_free(struct auth **authp)
{
	struct auth *auth = *authp;

	if (auth == NULL)
		return;
	*authp = NULL;
	pthread_mutex_lock(&auth->queue_lock);
	auth->stopping = true;
	pthread_cond_broadcast(&auth->queue_cond);
	pthread_mutex_unlock(&auth->queue_lock);
	for (unsigned int i = 0; i < auth->nthreads; i++)
		pthread_join(auth->threads[i], NULL);
	auth->nthreads = 0;

	/* answer whatever is still queued */
	for (;;) {
		pthread_mutex_lock(&auth->queue_lock);
		struct auth_request *req = auth->queue_head;
		if (req != NULL) {
			auth->queue_head = req->qnext;
			if (auth->queue_head != NULL)
				auth->queue_head->qprev = NULL;
			else
				auth->queue_tail = NULL;
			req->qnext = req->qprev = NULL;
			req->queued = false;
			auth->stats.queued--;
		}
		pthread_mutex_unlock(&auth->queue_lock);
		if (req == NULL)
			break;
		fail(req, AUTH_RESULT_TEMPFAIL,
		     "auth service is shutting down");
		request_finish(auth, req);
	}
	auth_release(auth);
	auth_unref(auth);
}
