#ifndef MR_PROXY_H
#define MR_PROXY_H

/*
 * mailring-proxy internals shared by the files of proxy/ (a module-private
 * header: nothing outside proxy/ includes it).
 *
 * Data flow of one session (docs/proxy.md has the long version):
 *
 *   accept (worker thread) -> [PROXY header] -> [TLS] -> greeting
 *   -> pre-login commands (protocol vtable: imap_client.c, pop3_client.c)
 *   -> auth request (auth/, worker threads) -> failure delay or
 *   -> route (ring/placement) -> backend connect + login (backend.c with
 *      the protocol's backend dialogue: imap_backend.c, pop3_backend.c)
 *   -> relay (relay.c): bytes both ways, splice() when both sides are
 *      plaintext -> close, one log line.
 *
 * Threads: a session lives and dies on the worker thread that accepted it.
 * Shared state (struct proxy_config, the per-IP table) is read-mostly and
 * reference counted or striped-locked; nothing per-byte takes a lock.
 */

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

#include "auth/auth.h"
#include "buf.h"
#include "conn.h"
#include "log.h"
#include "net.h"
#include "proxy_settings.h"

struct client;
struct backend_login;
struct relay;
struct proxy_worker;

/* ---- configuration generations ------------------------------------- */

struct proxy_backend {
	const struct backend_settings *set;
	struct net_addr addr;      /* port not set; per protocol below */
	SSL_CTX *ssl_ctx;          /* for ssl = starttls/yes, else NULL */
	/* host is a DNS name without an address yet (proxy/discovery.c):
	 * logins, LMTP and health checks pass it by; addr is zeroed */
	bool unresolved;
};

/* One loaded configuration. Sessions keep a reference to the generation
 * they started with, so a reload never changes settings under them. */
struct proxy_config {
	atomic_uint refcount;
	struct proxy_settings set;
	struct proxy_backend *backends;
	size_t backend_count;
	struct net_addr *source_ips;
	size_t source_ip_count;
};

/* The current generation, with a reference the caller must drop. */
struct proxy_config *proxy_config_ref(void);
void proxy_config_unref(struct proxy_config **cfg);
/* Builds a generation from loaded settings (taken over: *set is zeroed).
 * Returns NULL with err set when a backend or source IP is invalid. */
struct proxy_config *proxy_config_build(struct proxy_settings *set, char *err,
					size_t errsize);
/* The part of the user name that places it and keys its mapping: all of
 * it, or the domain (user_hash_key = domain). A view into user. */
struct str proxy_user_key(const struct proxy_settings *set, const char *user);
/* Makes cfg current (taking the caller's reference). */
void proxy_config_install(struct proxy_config *cfg);

/* ---- process-wide state ---------------------------------------------- */

struct proxy {
	struct net_workers *workers;
	struct tls_server *tls;          /* NULL without ssl_cert */
	struct auth *auth;
	const char *config_path;
	atomic_uint connections;         /* client connections now */
	/* logins by result, for /metrics */
	atomic_ullong logins_ok;
	atomic_ullong logins_failed;     /* wrong password, unknown user */
	atomic_ullong logins_nologin;
	atomic_ullong logins_tempfail;   /* the passdb failed */
	atomic_ullong logins_unavailable; /* no backend took the login */
	atomic_uint source_ip_next;      /* round robin over source_ips */
	atomic_bool shutting_down;
	struct iplimit *iplimit;
};

extern struct proxy proxy;

/* ---- per-IP connection counts (iplimit.c) ---------------------------- */

struct iplimit;
struct iplimit *iplimit_new(void);
void iplimit_free(struct iplimit **lim);
/* Counts one more connection from addr unless that would pass max (0 = no
 * limit). Returns false when the limit is reached. */
bool iplimit_acquire(struct iplimit *lim, const struct net_addr *addr,
		     unsigned int max);
void iplimit_release(struct iplimit *lim, const struct net_addr *addr);

/* ---- workers ---------------------------------------------------------- */

struct proxy_worker {
	struct net_worker *nw;
	struct event_base *base;
	struct client *clients;          /* all sessions of this worker */
	unsigned int client_count;
	int *pipe_pool;                  /* spare pipes for splice: fd pairs */
	unsigned int pipe_pool_count;
	bool stopping;
	struct net_timer *drain_timer;   /* while stopping */
};

/* Worker hooks for net_workers_new (count 0 = one per core). */
const struct net_workers_settings *proxy_worker_hooks(unsigned int count);

/* ---- protocols -------------------------------------------------------- */

/* What a protocol (IMAP, POP3) plugs into the session core. */
struct client_protocol {
	const char *name;             /* "imap", "pop3": service for auth */
	/* Bytes of protocol state to allocate after struct client. */
	size_t state_size;
	/* Sends the greeting (after any PROXY header and implicit TLS). */
	void (*greet)(struct client *c);
	/* Parses and runs what is in c->input; called whenever bytes
	 * arrive in a pre-login state. */
	void (*input)(struct client *c);
	/* The login failed (auth or backend): answer the pending command.
	 * code says what kind; text is client-safe. */
	void (*login_failed)(struct client *c, enum auth_result_code code,
			     const char *resp_code, const char *text);
	/* The backend accepted the login: answer the pending command.
	 * Called right before the relay starts. */
	void (*login_succeeded)(struct client *c, struct backend_login *bl);
	/* The session is being closed by us (kick, shutdown, timeout): the
	 * protocol's final line ("* BYE ...", "-ERR ..."). */
	void (*bye_line)(struct client *c, const char *reason,
			 struct buf *out);
	/* The backend dialogue: greeting and login lines arrive here. */
	void (*backend_start)(struct backend_login *bl);
	void (*backend_line)(struct backend_login *bl, struct str line);
	/* TLS to the backend is up after STARTTLS/STLS. */
	void (*backend_tls_ready)(struct backend_login *bl);
	/* Frees protocol state (optional). */
	void (*free)(struct client *c);
};

extern const struct client_protocol imap_protocol;
extern const struct client_protocol pop3_protocol;

/* ---- client sessions (client.c) -------------------------------------- */

enum client_state {
	CLIENT_STATE_PROXY_HEADER = 0, /* waiting for the PROXY v1/v2 header */
	CLIENT_STATE_TLS_HANDSHAKE,    /* implicit TLS or after STARTTLS */
	CLIENT_STATE_PRELOGIN,         /* reading pre-login commands */
	CLIENT_STATE_AUTH,             /* auth request in flight */
	CLIENT_STATE_AUTH_DELAY,       /* failure delay before answering */
	CLIENT_STATE_BACKEND,          /* connecting/logging in to a backend */
	CLIENT_STATE_RELAY,            /* logged in: relaying bytes */
	CLIENT_STATE_CLOSING,          /* flushing the last reply, then close */
	CLIENT_STATE_COUNT
};

extern const char *const client_state_names[CLIENT_STATE_COUNT];

/* Why a login attempt is pending: filled by the protocol, used by the
 * core for auth, routing and the backend login. */
struct client_login {
	struct buf *user;       /* as the client sent it */
	struct buf *authzid;    /* SASL authorisation identity, may be empty */
	struct buf *password;   /* secret: wiped on free */
	const char *method;     /* "PLAIN", "LOGIN" (static) */
};

struct client {
	struct client *prev, *next;     /* worker's list */
	struct proxy_worker *worker;
	struct proxy_config *cfg;
	const struct listener_settings *listener;
	size_t listener_idx;            /* listeners are the same in every
					 * generation (a reload refuses changes) */
	const struct client_protocol *proto;
	void *proto_state;              /* proto->state_size bytes */
	struct conn *conn;
	enum client_state state;

	struct net_addr rip, lip;       /* client, as seen through PROXY */
	struct net_addr real_rip;       /* socket peer */
	char session_id[LOG_SESSION_ID_LEN + 1];
	uint64_t connected_msecs;
	uint64_t last_io_msecs;

	struct buf *input;              /* pre-login only */
	struct buf *output;             /* pre-login only */
	struct net_timer *timer;        /* login, delay or idle timeout */

	struct client_login login;
	struct auth_request *auth_req;
	char *user;                     /* canonical user after auth */
	char *backend_user;             /* destuser or user */
	char *backend_pass;             /* secret, wiped */
	const char *fail_resp_code;     /* pending failure answer */
	const char *fail_text;
	char fail_text_buf[160];        /* fail_text when it came from the passdb */
	enum auth_result_code fail_code;
	char *director_key;             /* user or domain: the mapping key */
	char *tag;                      /* director_tag= from auth */
	bool director_registered;       /* a session counted in the director */
	char *pinned_host;              /* host= from auth */
	uint16_t pinned_port;
	char *id_fields;                /* IMAP ID pairs from the client */

	struct backend_login *bl;
	struct relay *relay;
	const struct proxy_backend *backend;

	unsigned int bad_commands;
	unsigned int auth_attempts;
	bool tls;                       /* the client connection is TLS */
	bool trusted;                   /* in login_trusted_networks */
	bool iplimit_held;
	bool rawlog;
	bool greeted;
	bool closing_after_output;      /* close once output is flushed */
	bool destroyed;
	bool kick_pending;              /* a delayed kick is armed */
	char close_reason[96];
	char *last_user;                /* the last login attempt, for logs */
};

/* Plaintext credentials are fine: TLS, or a trusted network when
 * disable_plaintext_auth allows it. */
bool client_is_secured(const struct client *c);
void client_set_state(struct client *c, enum client_state state);
/* Queues bytes to the client (pre-login). Returns -1 when the output limit
 * is reached (the client stopped reading: it is then closed). */
int client_send(struct client *c, const void *data, size_t len);
int client_send_str(struct client *c, const char *s);
int client_printf(struct client *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Consumes n bytes of c->input. */
void client_input_consume(struct client *c, size_t n);
/* Starts TLS on the client connection (STARTTLS/STLS) once the pending
 * output is flushed. */
void client_start_tls(struct client *c);
/* Starts authentication of c->login. */
void client_auth_start(struct client *c);
/* Closes after flushing pending output; reason goes to the log. */
void client_close_after_output(struct client *c, const char *reason);
/* Closes now (without further output). */
void client_destroy(struct client *c, const char *reason);
/* Closes from outside (kick/shutdown/timeout): protocol BYE, then close. */
void client_kick(struct client *c, const char *reason);
/* Fills ctx for log lines of this session. */
void client_log_ctx(const struct client *c, struct log_ctx *ctx);
/* True when the client's pre-login input should be parsed again. */
void client_input_resume(struct client *c);
/* Called by backend.c: the login worked / failed for good. */
void client_backend_ready(struct client *c, struct backend_login *bl);
void client_backend_failed(struct client *c, const char *resp_code,
			   const char *text);
/* Called by the relay when it ends. backend_side: the backend closed or
 * failed first (its clients' disconnects are then spread over
 * max_disconnect_delay, so they do not all reconnect in one second). */
void client_relay_finished(struct client *c, const char *reason,
			   bool backend_side);
/* Closes sessions of user (NULL = any) on backend (NULL = any) on every
 * worker, with a BYE carrying reason; spread: over max_disconnect_delay.
 * Call from the main thread; returns how many sessions were closed. */
unsigned int proxy_kick(const char *user, const char *backend,
			const char *reason, bool spread);
/* The same for the sessions whose director key (the mapping key: user or
 * domain) is one of keys, on backend: a paced flush's batch. */
unsigned int proxy_kick_keys(const char *const *keys, size_t count,
			     const char *backend, const char *reason);
/* Frees the pending login credentials (wiping the password). */
void client_login_clear(struct client *c);

/* Accept callback for the listeners (client.c). */
void client_accept(struct net_worker *nw, int fd, const struct net_addr *peer,
		   const struct net_addr *local, void *context);

/* ---- backend login (backend.c) --------------------------------------- */

struct backend_login {
	struct client *client;
	struct conn *conn;
	const struct proxy_backend *backend;
	struct net_addr addr;           /* with port */
	uint32_t candidate[8];
	size_t candidate_count;
	size_t candidate_idx;
	bool pinned;                    /* host= from auth */
	bool mapped;                    /* candidate[0] is the user's mapping */
	bool rerouted;                  /* the idle mapping was dropped once */
	struct directing_lookup *lookup; /* the shared store is asked */
	bool ring_routed;               /* routed by the shared store's answer */
	struct buf *input;              /* backend lines */
	struct buf *output;             /* to the backend */
	struct net_timer *timer;
	unsigned int proto_step;        /* the protocol's dialogue state */
	bool connected;
	bool tls_pending;
	/* A write failed inside backend_send: acted on (backend_login_fail)
	 * only after the protocol callback that sent returns, so protocol
	 * code never touches a freed login. */
	bool failed;
	char fail_reason[200];
	/* post-login data: IMAP capabilities; POP3: the backend's +OK line */
	char *capability;
	char backend_name[64];
};

/* Picks the backend for the client's user and starts connecting. */
void backend_login_start(struct client *c);
void backend_login_free(struct backend_login **bl);
/* Queues bytes to the backend. Never frees bl: on failure it returns -1
 * and the login fails once the protocol callback returns. */
int backend_send(struct backend_login *bl, const void *data, size_t len);
int backend_printf(struct backend_login *bl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Starts TLS to the backend (after its STARTTLS/STLS answer). */
void backend_start_tls(struct backend_login *bl);
/* The backend refused or broke the login for good. */
void backend_login_fail(struct backend_login *bl, const char *resp_code,
			const char *text, const char *log_reason);
/* The backend is unusable (greeting wrong, TLS failed...): try the next
 * candidate if there is one. */
void backend_login_retry(struct backend_login *bl, const char *log_reason);
/* Login done: hand the connection to the client for relaying. */
void backend_login_done(struct backend_login *bl);

/* ---- relay (relay.c) --------------------------------------------------- */

/* Takes both connections; initial bytes (already read from one side) are
 * forwarded first. */
struct relay *relay_start(struct client *c, struct conn *client_conn,
			  struct conn *backend_conn,
			  const struct buf *to_client,
			  const struct buf *to_backend);
void relay_free(struct relay **r);
/* Writes a final line to the client if the stream is at a boundary,
 * then closes both sides. */
void relay_close(struct relay *r, const struct buf *last_line);
/* Stops relaying (both sides idle) while a delayed close is pending. */
void relay_pause(struct relay *r);
unsigned long long relay_bytes_in(const struct relay *r);
unsigned long long relay_bytes_out(const struct relay *r);

/* ---- pipes for splice (worker-owned pool) ---------------------------- */
int proxy_pipe_get(struct proxy_worker *w, int fds_r[2]);
void proxy_pipe_put(struct proxy_worker *w, int fds[2]);

#endif
