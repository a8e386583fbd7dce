#ifndef MR_AUTH_H
#define MR_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "auth_cache.h"
#include "auth_fields.h"
#include "auth_penalty.h"
#include "str.h"

/* Asynchronous authentication for the proxy (and later the backend).
 *
 * A request goes: user name validation and normalisation (auth_user.h) ->
 * penalty lookup -> cache -> a bounded queue -> one of a few worker threads,
 * which asks the passdb driver and verifies the password (crypt takes
 * milliseconds to a tenth of a second: no event loop may wait on it) -> the
 * result comes back as a callback ON THE THREAD OF THE EVENT LOOP THAT MADE
 * THE REQUEST, through an event made with event_new() on that loop's
 * event_base and activated from the worker.
 *
 * Requirements: evthread_use_pthreads() must have been called before any
 * event_base is created; every function below except auth_new/auth_free is
 * called from the thread running the event_base it names (or that made the
 * request). A pending request keeps its loop alive.
 *
 * The caller never sleeps: each result carries delay_ms, the time to wait
 * (with a timer) before answering the client. It is counted from the moment
 * the request was made, so that a failure answers at the same time whatever
 * work was done (an unknown user is not faster than a wrong password). */

struct event_base;

struct auth_settings {
	/* passdb driver name ("passwd-file") and its arguments, Dovecot's
	 * passdb args, e.g. "scheme=SHA512-CRYPT /etc/mailring/users" */
	const char *passdb_driver;
	const char *passdb_args;
	/* Dovecot's auth_username_chars (NULL = its default, "" = any
	 * character outside the always-forbidden set) and
	 * auth_username_format (NULL = "%Lu"); see auth_user.h */
	const char *username_chars;
	const char *username_format;
	size_t username_max_len; /* 0 = 255 */
	unsigned int workers;    /* worker threads, 1..64 */
	unsigned int queue_max;  /* requests waiting for a worker, >= 1 */
	/* minimum time from request to answer for a failure (Dovecot's
	 * auth_failure_delay) */
	uint32_t failure_delay_ms;
	bool cache_enabled;
	struct auth_cache_settings cache;
	bool penalty_enabled;
	struct auth_penalty_settings penalty;
	/* monotonic clock in ms, called from any thread (must be thread-safe);
	 * NULL = CLOCK_MONOTONIC (tests inject one) */
	uint64_t (*now_ms)(void *context);
	void *now_context;
};

/* Fills set with defaults: passwd-file with no args (must be set), Dovecot's
 * username rules, workers = online CPUs clamped to 2..16, queue_max 1024,
 * failure_delay_ms 2000, cache and penalties enabled with their defaults. */
void auth_settings_init(struct auth_settings *set);

struct auth;

/* Creates the auth service: initialises the passdb driver (reading the
 * passwd-file) and starts the workers. Returns NULL with a malloc'd
 * *error_r (caller frees) on bad settings or a driver failure. Worker
 * threads block all signals. */
struct auth *auth_new(const struct auth_settings *set, char **error_r);

/* Stops the service: waits for the workers to finish their current request,
 * answers every still-queued request with AUTH_RESULT_TEMPFAIL, and frees
 * the driver, cache and penalty table. Sets *auth to NULL. Must not run
 * concurrently with auth_request_new(). Callbacks of outstanding requests
 * (and the disposal of cancelled ones) still happen on their loops the next
 * time those loops run; auth_request_cancel() stays valid for them. */
void auth_free(struct auth **auth);

enum auth_result_code {
	/* authenticated; for AUTH_REQUEST_FLAG_LOOKUP_ONLY: the user exists */
	AUTH_RESULT_OK = 0,
	/* wrong password, invalid or empty user name or password, client IP
	 * not in allow_nets, master-user login attempt */
	AUTH_RESULT_FAILED,
	/* no such user. Answer the client exactly as for FAILED: the
	 * difference is for logs only */
	AUTH_RESULT_UNKNOWN_USER,
	/* the password matched but the user may not log in here (nologin);
	 * nologin_reason may be shown to the client, and with proxy set it is
	 * a referral rather than a refusal */
	AUTH_RESULT_NOLOGIN,
	/* internal failure: queue full, passdb down, unknown password scheme,
	 * malformed hash, invalid field in the passdb, shutting down */
	AUTH_RESULT_TEMPFAIL,
};

/* Everything here is valid only during the callback: copy what you keep. */
struct auth_result {
	enum auth_result_code code;
	/* canonical user (the user= field, else the normalised login name);
	 * NULL when the login name itself was invalid */
	const char *user;
	/* why it failed, for the caller's log, never for the client; NULL for
	 * OK. Contains no password and no client bytes (the user name is in
	 * the caller's own log context), so it is safe to print as is. */
	const char *log_reason;
	/* something the admin should see even if the request worked (a
	 * passwd-file reload failed and the old users are served), or NULL */
	const char *warning;
	/* reason= for NOLOGIN, or NULL */
	const char *nologin_reason;
	/* wait this long (ms) before answering the client, with a timer */
	uint32_t delay_ms;
	/* answered from the cache, without the passdb */
	bool cached;

	/* Proxy and director fields, set for OK and NOLOGIN only: */
	bool proxy;           /* proxy */
	bool proxy_maybe;     /* proxy_maybe */
	bool nopassword;      /* the password was not checked (nopassword) */
	bool nodelay;         /* nodelay: failure delay was not applied */
	const char *host;     /* host=, NULL when absent */
	uint16_t port;        /* port=, 0 when absent */
	const char *destuser; /* destuser=, NULL when absent */
	const char *pass;     /* pass= (a secret), NULL when absent */
	const char *director_tag; /* director_tag=, NULL when absent */
	/* every passdb extra field, and the userdb ones ("userdb_" stripped,
	 * plus home/uid/gid from the passwd-file); empty, never NULL */
	const struct auth_fields *fields;
	const struct auth_fields *userdb_fields;
};

typedef void auth_callback_t(const struct auth_result *result, void *context);

enum auth_request_flags {
	/* no password: only ask whether the user exists and get its fields
	 * (LMTP, director lookups). No penalties and no delay. */
	AUTH_REQUEST_FLAG_LOOKUP_ONLY = 1 << 0,
};

struct auth_request_params {
	/* login name as the client sent it (any bytes; validated here) */
	struct str user;
	/* SASL authorisation identity; empty or equal to user, otherwise the
	 * request fails (master users are not supported) */
	struct str authzid;
	/* plaintext password, already decoded from SASL PLAIN/LOGIN; a NUL
	 * inside fails the request. Copied, and the copy is wiped. Ignored
	 * for AUTH_REQUEST_FLAG_LOOKUP_ONLY. */
	struct str password;
	const char *service;    /* "imap", "pop3", "lmtp" (copied) */
	const char *client_ip;  /* textual address, NULL for none (copied) */
	const char *session_id; /* for logs, may be NULL (copied) */
	unsigned int flags;     /* enum auth_request_flags */
};

struct auth_request;

/* Starts a request on behalf of the event loop base (called from its
 * thread). callback(result, context) runs exactly once, later, on that
 * thread, never from inside this call, unless the request is cancelled
 * first. The returned handle is for auth_request_cancel() only and becomes
 * invalid when the callback returns. Never returns NULL. A full queue gives
 * an immediate AUTH_RESULT_TEMPFAIL (still via the callback). */
struct auth_request *auth_request_new(struct auth *auth,
				      struct event_base *base,
				      const struct auth_request_params *params,
				      auth_callback_t *callback, void *context);

/* Cancels a request whose callback has not run yet (e.g. the client
 * disconnected), from the loop's thread: the callback will never run. A
 * request still waiting in the queue is dropped at once; one being worked on
 * finishes in its worker and is discarded on the loop. Sets *req to NULL;
 * safe on NULL. */
void auth_request_cancel(struct auth_request **req);

/* "ok", "failed", "unknown user", "nologin", "tempfail". */
const char *auth_result_code_str(enum auth_result_code code);

struct auth_stats {
	unsigned int queued;  /* waiting for a worker now */
	unsigned int running; /* being worked on now */
	uint64_t requests;    /* started */
	uint64_t worker_done; /* finished by a worker */
	uint64_t queue_full;  /* refused with TEMPFAIL because of the queue */
	uint64_t cache_hits;  /* answered from the cache */
	uint64_t cancelled;   /* cancelled by the caller */
};

/* A snapshot of counters (thread-safe). */
void auth_get_stats(struct auth *auth, struct auth_stats *stats_r);

#endif
