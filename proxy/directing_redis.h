#ifndef MR_PROXY_DIRECTING_REDIS_H
#define MR_PROXY_DIRECTING_REDIS_H

/*
 * The redis store behind proxy/directing.c (private to it): one "store
 * thread" with its own event loop owns the Redis connections
 * (ring/redis_client.h) and runs the ring's protocol there:
 *
 *   - a login asks the ring where the user is (one EVAL: mapped, newly
 *     mapped by set-if-absent, busy while a move/flush is under way, or no
 *     backend); the answer is cached in the proxy's struct director;
 *   - session starts and ends are counted in the ring (fire and forget);
 *   - heartbeats, health votes with a quorum of live proxies (I3);
 *   - events on one pub/sub channel: backend table changed, kick a user,
 *     kick a backend's users; a move or flush waits for every live proxy's
 *     acknowledgement before the mapping changes (I4);
 *   - when Redis is unreachable the proxy is "degraded": logins use the
 *     cache and placement, and on return the proxy re-asserts the mappings
 *     of its live sessions (I5).
 *
 * The director (and its mutex) is directing.c's: passed in at start.
 */

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "directing.h"
#include "ring/director.h"

struct proxy_config;

int dredis_init(const struct proxy_config *cfg, struct director *dir,
		pthread_mutex_t *lock, char *err, size_t errsize);
/* Starts the store thread (after the workers run: kicks need them). */
void dredis_start(void);
/* Stops the thread (before the workers go): what waits is answered. */
void dredis_stop(void);
/* Frees everything (stops first if needed). */
void dredis_deinit(void);
/* A config reload: new backends are seeded into the ring, config weight
 * changes written. */
void dredis_reload(const struct proxy_config *cfg, const bool *weight_changed);

struct directing_lookup *dredis_lookup(struct event_base *base,
				       const char *user_key, const char *tag,
				       directing_lookup_fn *cb, void *ctx);
void dredis_lookup_cancel(struct directing_lookup **lp);
/* Sessions: the ring's count (the cache's count is directing.c's). */
void dredis_session(const char *user_key, const char *backend, int delta);
/* This proxy's health view of backend (I3 vote). */
void dredis_health_vote(const char *backend, bool failing);
bool dredis_degraded(void);

struct dredis_metrics {
	unsigned long long lookups;
	unsigned long long lookup_failures;
	unsigned long long store_calls;
	unsigned long long store_latency_usecs_sum;
	bool degraded;
};
void dredis_metrics(struct dredis_metrics *m);
/* Connected and reconciled: logins must find their mapping in the cache. */
bool dredis_authoritative(void);

/* Admin operations (JSON into out, 0 ok, -1 error). With an answer hook
 * they return DIRECTING_PENDING and the hook gets the answer (store
 * thread); without one they wait for the store thread, bounded by
 * director_move_timeout plus redis_timeout. */
void dredis_set_answer_hook(directing_answer_fn *fn);
void dredis_set_admin_token(uint64_t token);
int dredis_status(struct buf *out);
int dredis_ring_status(struct buf *out);
int dredis_map(const char *user, struct buf *out);
int dredis_users(const char *backend, struct buf *out);
int dredis_set_weight(const char *backend, unsigned int weight,
		      struct buf *out);
int dredis_set_up(const char *backend, bool up, struct buf *out);
int dredis_flush(const char *backend, struct buf *out);
int dredis_move(const char *user, const char *backend, struct buf *out);
int dredis_kick(const char *user, struct buf *out);
int dredis_add(const char *host, unsigned int weight, struct buf *out);
int dredis_remove(const char *name, struct buf *out);

#endif
