#ifndef MR_PROXY_ADMIN_H
#define MR_PROXY_ADMIN_H

/*
 * The proxy's admin API: HTTP/1.1 with JSON bodies on a unix socket
 * (setting admin_socket), served on the main thread's event loop. The
 * `mailring` CLI talks to it; so can `curl --unix-socket`.
 *
 *   GET  /status                 backends: state, weight, tag, users, sessions
 *   GET  /map?user=U             where U goes, and why (mapped/hashed)
 *   GET  /users?backend=B        users mapped to B
 *   POST /update {"backend":"B","weight":N}
 *   POST /up     {"backend":"B"}
 *   POST /down   {"backend":"B"}
 *   POST /drain  {"backend":"B"}         weight 0
 *   POST /flush  {"backend":"B"}         drop B's mappings, kick its users
 *   POST /move   {"user":"U","backend":"B"}
 *   POST /kick   {"user":"U"}
 *   GET  /metrics                Prometheus text format
 *
 * With admin_listen = HOST:PORT the same API is served over TCP too, and
 * every request there needs "Authorization: Bearer <admin_token>" (401
 * otherwise, logged); the unix socket relies on its file mode instead.
 *
 * Answers are application/json ({"error":"..."} with 400, 404, 405, 411,
 * 413, 414, 431 or 500), one request per connection (Connection: close).
 * One client is served at a time; others wait in the listen backlog. A
 * client has ADMIN_TIMEOUT_MSECS for its request and our answer; reads
 * and writes are non-blocking and bounded, so a slow client never blocks
 * the loop.
 */

#include <stddef.h>

struct event_base;

#define ADMIN_TIMEOUT_MSECS 10000

/* Listens on path (mode 0600; a stale socket file there is removed) and
 * serves on main_base (the main thread's). Returns 0, or -1 with err set.
 * An empty path does nothing and returns 0. */
int admin_start(struct event_base *main_base, const char *path, char *err,
		size_t errsize);
/* Closes the listener and any client, removes the socket file. Safe when
 * not started. */
void admin_stop(void);

#endif
