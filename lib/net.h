#ifndef MR_NET_H
#define MR_NET_H

/* Networking for daemons on libevent: numeric addresses, listening sockets,
 * worker threads with one event_base each and SO_REUSEPORT listeners,
 * cross-thread calls, timers, signals, outgoing connects.
 *
 * Threading model: one event_base per thread and nothing mutable shared. A
 * session accepted on a worker lives and dies on that worker's base. The
 * only cross-thread paths are net_worker_run()/net_workers_run_all() and the
 * stop sequence; they work because net_init() enables libevent's pthread
 * support before any base is made.
 *
 * Errors: functions that can fail in ways an admin must read take a
 * caller-provided buffer (err, errsize; NET_ERROR_MAX always suffices) and
 * write a complete message there, e.g.
 * "bind(127.0.0.1:143) failed: Address already in use". Parsers return
 * static text through const char **error_r. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

struct event_base;

#define NET_ERROR_MAX 256
/* Enough for "[ffff:...:255.255.255.255%ifname]:65535" and a NUL. */
#define NET_ADDR_STR_MAX 72
#define NET_LISTEN_BACKLOG_DEFAULT 511

/* Enables libevent's pthread locking (evthread_use_pthreads) once per
 * process. Call it before creating any event_base that another thread may
 * wake (the main base included). net_workers_new() calls it too. Returns 0,
 * or -1 when libevent's thread support cannot be enabled. */
int net_init(void);

/* ---- addresses ----------------------------------------------------------- */

/* An IPv4 or IPv6 socket address (AF_UNSPEC when zeroed). Plain value: copy
 * it freely. */
struct net_addr {
	union {
		struct sockaddr sa;
		struct sockaddr_in sin;
		struct sockaddr_in6 sin6;
		struct sockaddr_storage ss;
	} u;
	socklen_t len;
};

/* net_addr_parse() flags */
enum {
	/* "127.0.0.1" and "::1"/"[::1]" without a port give port 0. */
	NET_ADDR_PORT_OPTIONAL = 0x01,
	/* Accept an explicit port 0 (e.g. listen on an ephemeral port). */
	NET_ADDR_PORT_ZERO = 0x02,
};

/* Parses a numeric address with port:
 *   "127.0.0.1:143", "[::1]:143", "[fe80::1%eth0]:143",
 *   "*:143" (all IPv4 addresses), "[::]:143" (all IPv6 addresses).
 * Host names are refused (DNS is resolved elsewhere, asynchronously), as is
 * a bare port ("143": write "*:143" or "[::]:143"), an IPv6 address without
 * brackets when a port follows, ports above 65535 and, unless
 * NET_ADDR_PORT_ZERO, port 0. An IPv4-mapped IPv6 address becomes IPv4.
 * Returns 0, or -1 with *error_r set to a static message. */
int net_addr_parse(const char *text, unsigned int flags,
		   struct net_addr *addr_r, const char **error_r);

/* Fills addr from a sockaddr of len bytes (AF_INET or AF_INET6) and
 * normalises it. Returns 0, or -1 for another family or a short length. */
int net_addr_from_sockaddr(struct net_addr *addr, const struct sockaddr *sa,
			   socklen_t len);

/* Turns an IPv4-mapped IPv6 address (::ffff:a.b.c.d) into plain IPv4,
 * keeping the port. Other addresses are left alone. */
void net_addr_normalize(struct net_addr *addr);

/* The port in host byte order (0 for AF_UNSPEC). */
uint16_t net_addr_port(const struct net_addr *addr);
void net_addr_set_port(struct net_addr *addr, uint16_t port);
/* True for 0.0.0.0 and ::. */
bool net_addr_is_any(const struct net_addr *addr);

/* Compare after normalisation: the IP (and the IPv6 scope id), and for
 * net_addr_eq also the port. */
bool net_addr_ip_eq(const struct net_addr *a, const struct net_addr *b);
bool net_addr_eq(const struct net_addr *a, const struct net_addr *b);

/* Writes the IP alone ("1.2.3.4", "::1", "fe80::1%eth0"; a v4-mapped
 * address shows as IPv4) into dst, which should hold NET_ADDR_STR_MAX
 * bytes. Returns dst; "(none)" for AF_UNSPEC; dst is empty if it is too
 * small. */
const char *net_addr_ip_str(const struct net_addr *addr, char *dst,
			    size_t dstsize);
/* As net_addr_ip_str, with the port: "1.2.3.4:143", "[::1]:143". */
const char *net_addr_str(const struct net_addr *addr, char *dst,
			 size_t dstsize);

/* getsockname()/getpeername() into a normalised net_addr. Return 0, or -1
 * with errno set. */
int net_get_local_addr(int fd, struct net_addr *addr_r);
int net_get_peer_addr(int fd, struct net_addr *addr_r);

/* ---- sockets ------------------------------------------------------------- */

/* net_listen() flags */
enum {
	/* SO_REUSEPORT: several sockets (one per worker) share the address
	 * and the kernel spreads connections over them. Any process of the
	 * same user can then bind it too. */
	NET_LISTEN_REUSEPORT = 0x01,
};

/* Creates a non-blocking, close-on-exec TCP socket with SO_REUSEADDR (and
 * IPV6_V6ONLY for IPv6), binds it to addr and listens with backlog
 * (<= 0: NET_LISTEN_BACKLOG_DEFAULT). Returns the fd, or -1 with err set to
 * e.g. "bind(127.0.0.1:143) failed: Address already in use". */
int net_listen(const struct net_addr *addr, int backlog, unsigned int flags,
	       char *err, size_t errsize);

/* Starts a non-blocking TCP connect to dest from an optional source
 * (NULL: the kernel chooses). A source with port 0 is bound with
 * IP_BIND_ADDRESS_NO_PORT, so the local port is picked at connect time and
 * the 4-tuple can reuse ports. Returns a non-blocking, close-on-exec fd whose
 * connect is in progress or done; -1 with err set on an immediate failure.
 * With libevent: bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE)
 * then bufferevent_socket_connect(bev, NULL, 0) waits for the result, or
 * poll for writability and call net_connect_result(). */
int net_connect(const struct net_addr *dest, const struct net_addr *source,
		char *err, size_t errsize);

/* After fd became writable: 1 connected, 0 still in progress, -1 failed
 * with errno set to the reason (SO_ERROR). */
int net_connect_result(int fd);

/* TCP_NODELAY on or off. Returns 0, or -1 with errno set. */
int net_set_nodelay(int fd, bool on);
/* Enables SO_KEEPALIVE; idle_secs, interval_secs and count set
 * TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT when non-zero (0 keeps the
 * system default). Returns 0, or -1 with errno set. */
int net_set_keepalive(int fd, unsigned int idle_secs,
		      unsigned int interval_secs, unsigned int count);

/* ---- timers -------------------------------------------------------------- */

/* Timers over libevent. libevent measures timeouts with the monotonic clock
 * (on Linux CLOCK_MONOTONIC_COARSE, resolution a few ms, unless a base is
 * made with EVENT_BASE_FLAG_PRECISE_TIMER), so wall-clock steps never fire
 * or starve them. Our timeouts are in seconds or at least tens of ms, so the
 * precise flag is not needed and not used. The base caches "now" per loop
 * iteration: a callback that blocks delays the timers after it. */
struct net_timer;
typedef void net_timer_fn(void *context);

/* Creates a stopped timer on base. Never NULL (allocation aborts). */
struct net_timer *net_timer_new(struct event_base *base, net_timer_fn *cb,
				void *context);
/* (Re)starts t to fire msecs from now; with repeat it fires every msecs
 * until stopped. Restarting a pending timer moves its deadline (an idle
 * timeout is restarted on activity). */
void net_timer_start(struct net_timer *t, unsigned int msecs, bool repeat);
void net_timer_stop(struct net_timer *t);
bool net_timer_pending(const struct net_timer *t);
/* Stops and frees *t, sets it to NULL; safe on NULL and from the timer's
 * own callback. */
void net_timer_free(struct net_timer **t);
/* CLOCK_MONOTONIC in milliseconds, for measuring intervals. */
uint64_t net_monotonic_msecs(void);

/* ---- signals ------------------------------------------------------------- */

struct net_signals;
typedef void net_signal_fn(int signo, void *context);

/* Ignores SIGPIPE for the process (write errors come back as EPIPE).
 * Returns 0, or -1 with errno set. */
int net_ignore_sigpipe(void);

/* Handles signals on base, the main thread's event_base: SIGHUP calls
 * reload, SIGTERM and SIGINT call shutdown (either may be NULL), each with
 * the signal number and context, from base's loop (not in signal context).
 * Also ignores SIGPIPE. libevent delivers signals to one base only: create
 * one per process. Worker threads made by net_workers_start() block these
 * signals, so they land on the main thread. Returns NULL with err set on
 * failure. */
struct net_signals *net_signals_new(struct event_base *base,
				    net_signal_fn *reload,
				    net_signal_fn *shutdown, void *context,
				    char *err, size_t errsize);
/* Removes the handlers (the signals get their default actions back, SIGPIPE
 * stays ignored) and frees *sig; sets it to NULL. Safe on NULL. */
void net_signals_free(struct net_signals **sig);

/* ---- worker threads ------------------------------------------------------ */

struct net_workers;
struct net_worker;

/* A connection accepted on worker's thread. fd is non-blocking and
 * close-on-exec, and belongs to the callee (close it or hand it to a
 * bufferevent on net_worker_base(worker)). peer and local are normalised
 * (local is the actual address, also for a wildcard listener). */
typedef void net_accept_fn(struct net_worker *worker, int fd,
			   const struct net_addr *peer,
			   const struct net_addr *local, void *context);
/* Code run on a worker's thread. */
typedef void net_worker_fn(struct net_worker *worker, void *context);
/* Error reports (accept failures). NULL in settings: stderr. */
typedef void net_log_fn(const char *message, void *context);

struct net_workers_settings {
	/* Number of threads; 0 = online CPUs. */
	unsigned int count;
	/* listen() backlog per socket; 0 = NET_LISTEN_BACKLOG_DEFAULT. */
	int backlog;
	/* How long a worker stops accepting after EMFILE, ENFILE, ENOBUFS
	 * or ENOMEM (the pending connection is retried afterwards);
	 * 0 = 100 ms. */
	unsigned int accept_pause_msecs;
	/* Run on each worker's thread before its loop starts / after it
	 * ended (deinit frees what is left: sessions, their events). */
	net_worker_fn *init;
	net_worker_fn *deinit;
	/* Run on each worker's thread by net_workers_stop() once every
	 * worker has closed its listeners: start draining sessions, then call
	 * net_worker_drained() when none is left. NULL: no sessions to wait
	 * for, the worker ends right away. */
	net_worker_fn *stopping;
	net_log_fn *log;
	void *context; /* passed to init, deinit, stopping and log */
};

/* Creates the workers (not running yet), one event_base each. Returns NULL
 * with err set on failure. */
struct net_workers *net_workers_new(const struct net_workers_settings *set,
				    char *err, size_t errsize);

/* Adds a listener before net_workers_start(): binds one SO_REUSEPORT socket
 * per worker to addr right away (so errors show up at start-up) and calls
 * cb(worker, fd, peer, local, context) on the worker that accepted. With
 * port 0 the first socket gets an ephemeral port and the others the same.
 * bound_r (may be NULL) receives the bound address. Returns 0, or -1 with
 * err set (nothing is left bound). */
int net_workers_add_listener(struct net_workers *w, const struct net_addr *addr,
			     net_accept_fn *cb, void *context,
			     struct net_addr *bound_r, char *err,
			     size_t errsize);

/* Starts the threads (named "mr-worker-N"), which run init and then their
 * loops. SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1 and SIGUSR2 are blocked
 * in them, and SIGPIPE is ignored. Returns 0, or -1 with err set (threads
 * already started are stopped again; a second call fails too). */
int net_workers_start(struct net_workers *w, char *err, size_t errsize);

/* Number of workers (threads), fixed at creation. */
unsigned int net_workers_count(const struct net_workers *w);
/* Worker idx, or NULL unless 0 <= idx < net_workers_count(). */
struct net_worker *net_workers_get(struct net_workers *w, unsigned int idx);

/* Queues fn(worker, context) to run on worker's thread, in FIFO order with
 * other queued calls; returns at once. Callable from any thread. Returns 0,
 * or -1 when the worker's loop has already ended (fn will not run). */
int net_worker_run(struct net_worker *worker, net_worker_fn *fn, void *context);
/* Queues fn on every worker and returns at once. Returns how many workers
 * accepted the call. */
unsigned int net_workers_run_all(struct net_workers *w, net_worker_fn *fn,
				 void *context);
/* Queues fn on every worker and waits until each has run it (or ended
 * without running it). Aborts when called from a worker thread (it would
 * wait for itself). Returns how many workers ran fn. */
unsigned int net_workers_run_all_wait(struct net_workers *w, net_worker_fn *fn,
				      void *context);

/* Graceful stop; call from the main thread once its loop ended (from a
 * signal callback it blocks that loop for up to grace_msecs). 1) every worker
 * closes its listeners (connections still in their accept queues are reset),
 * and this waits for all of them; 2) every worker runs settings.stopping; its
 * loop ends when it calls net_worker_drained() or grace_msecs later, whichever
 * comes first; 3) deinit runs on each worker thread and the threads are joined.
 * Returns when no worker thread is left. Safe to call when not started or
 * twice; aborts when called from a worker thread. */
void net_workers_stop(struct net_workers *w, unsigned int grace_msecs);

/* Stops (grace 0) if still running, closes listeners, frees the bases
 * (events still on them are not freed: deinit must free them) and *w; sets
 * it to NULL. Safe on NULL. */
void net_workers_free(struct net_workers **w);

/* The worker whose thread calls this, or NULL on any other thread. */
struct net_worker *net_worker_current(void);
/* The worker's event_base: only its own thread may use it. */
struct event_base *net_worker_base(const struct net_worker *worker);
/* 0 .. count-1 */
unsigned int net_worker_id(const struct net_worker *worker);
/* The group the worker belongs to. */
struct net_workers *net_worker_workers(const struct net_worker *worker);
/* Per-worker user data, for the worker's own thread (set it in init). */
void *net_worker_get_data(const struct net_worker *worker);
void net_worker_set_data(struct net_worker *worker, void *data);
/* Called on the worker's own thread (else aborts) once stopping ran and its
 * sessions are gone: the loop ends after the current callback. Ignored
 * before net_workers_stop() began draining. */
void net_worker_drained(struct net_worker *worker);

#endif
