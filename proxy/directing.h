#ifndef MR_PROXY_DIRECTING_H
#define MR_PROXY_DIRECTING_H

/*
 * The proxy's director (embedded store): one struct director for the whole
 * process behind a mutex, taken at login, logout and admin commands, never
 * per byte. It decides where a user goes (sticky mapping, else placement),
 * counts sessions, expires mappings and persists its state to
 * director_state_file so a restart keeps mappings and backend states.
 *
 * Admin operations answer with JSON (for the admin socket and the
 * `mailring` CLI); "kick" operations close sessions through proxy_kick
 * before remapping (invariant I4), which is synchronous in one process.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "ring/director.h"

struct proxy_config;

/* Builds the director from cfg's backends and loads the state file when
 * one is configured and exists. Returns 0, or -1 with err set. */
int directing_init(const struct proxy_config *cfg, char *err, size_t errsize);
/* Starts the shared store's thread (after the workers: kicks need them)
 * and stops it (before the workers go). No-ops for the embedded store. */
void directing_start(void);
void directing_stop(void);
/* Saves the state (if configured) and frees everything. */
void directing_deinit(void);
/* The store is shared (redis): health votes go to the quorum (I3). */
bool directing_shared(void);
/* Shared store unreachable: serving from the cache (I5). */
bool directing_degraded(void);
/* For /metrics: lookups in the shared store, failures, latency sum. */
void directing_store_metrics(unsigned long long *lookups_r,
			     unsigned long long *failures_r,
			     unsigned long long *calls_r,
			     unsigned long long *latency_usecs_sum_r);
/* A reload: backends new in cfg are added, weights of config-managed
 * backends follow the config, backends gone from it are removed. */
void directing_reload(const struct proxy_config *cfg);
/* Periodic work from the main loop: expire mappings, save if changed. */
void directing_tick(void);

/* ---- the login path (worker threads) --------------------------------- */

/* Before directing_route on a login, the shared store is asked where the
 * user is (one round trip; the answer fills the cache that
 * directing_route reads). NULL when there is nothing to wait for
 * (embedded store, or degraded): go on at once. Otherwise cb runs later
 * on base's thread: OK (route now), NONE (no backend can take the user),
 * BUSY (the user is being moved and the wait timed out). */
enum directing_lookup_result {
	DIRECTING_LOOKUP_OK = 0,        /* the ring answered: route now */
	DIRECTING_LOOKUP_DEGRADED,      /* the ring failed: route from the cache */
	DIRECTING_LOOKUP_NONE,
	DIRECTING_LOOKUP_BUSY,
};
struct directing_lookup;
struct event_base;
typedef void directing_lookup_fn(enum directing_lookup_result result,
				 void *ctx);
struct directing_lookup *directing_lookup(struct event_base *base,
					  const char *user_key, const char *tag,
					  directing_lookup_fn *cb, void *ctx);
/* cb is not called after this; on the thread of base. */
void directing_lookup_cancel(struct directing_lookup **l);
/* This proxy's health view of backend: the vote of the shared store's
 * quorum (I3). */
void directing_health_vote(const char *backend, bool failing);

/* Where user (the hash key) goes: the mapped backend, else the placement
 * ranking. Names go to out (at most max); returns how many, and *mapped_r
 * says whether the first is a mapping (then there is no fallback: I1). */
size_t directing_route(const char *user_key, const char *tag,
		       char (*out)[DIRECTOR_NAME_MAX], size_t max,
		       bool *mapped_r);
/* A session of user_key is now open on backend; returns false when
 * another session mapped the user elsewhere meanwhile (I1: the caller
 * must drop this one). ring_routed: the backend came from the shared
 * store's answer (DIRECTING_LOOKUP_OK), which a kick since then voids;
 * a login routed while degraded is checked by the ring afterwards. */
bool directing_session_begin(const char *user_key, const char *backend,
			     bool ring_routed);
/* A session of user_key on backend ended (one whose begin returned true). */
void directing_session_end(const char *user_key, const char *backend);
/* The user's mapped backend refused connections: drop the mapping if the
 * user has no open session (then I1 allows placing it anew). Returns true
 * when dropped. */
bool directing_unmap_idle(const char *user_key, const char *backend);

/* ---- admin operations: JSON into out; 0 ok, -1 error (JSON error) ------ */

/* With the shared store an admin operation may answer later: it returns
 * DIRECTING_PENDING and the answer (ret, JSON) goes to the hook, from any
 * thread, with the token set before the call. Without a hook the call
 * waits for the answer. */
#define DIRECTING_PENDING 1
typedef void directing_answer_fn(uint64_t token, int ret, const struct buf *out);
void directing_set_answer_hook(directing_answer_fn *fn);
void directing_set_admin_token(uint64_t token);

int directing_status(struct buf *out);
/* The ring itself: store kind, state file and its last save, proxies
 * alive, degraded or not (always false for the embedded store). */
int directing_ring_status(struct buf *out);
/* One backend's state; false for an unknown name. */
bool directing_backend_info(const char *backend,
			    struct director_backend_info *info_r);
/* The backends' numbers (for /metrics): fills up to max, returns how many;
 * *users_r gets the number of mapped users. */
size_t directing_backends(struct director_backend_info *out, size_t max,
			  size_t *users_r);
int directing_map(const char *user, struct buf *out);
int directing_users(const char *backend, struct buf *out);
int directing_set_weight(const char *backend, unsigned int weight,
			 struct buf *out);
int directing_set_up(const char *backend, bool up, struct buf *out);
/* Flush: with more users than director_flush_batch, paced on base's loop
 * (the answer says "paced"; the end is logged). */
int directing_flush(const char *backend, struct event_base *base,
		    struct buf *out);
int directing_move(const char *user, const char *backend, struct buf *out);
int directing_kick(const char *user, struct buf *out);
/* `mailring add HOST [WEIGHT]`: a backend at an IP address, with the
 * settings (ports, TLS, master user) of director_backend_template; kept
 * in the store (state file or Redis) and so across restarts. */
int directing_add(const char *host, unsigned int weight, struct buf *out);
/* `mailring remove NAME`: only backends added at run time (the config
 * file's go by editing it); its sessions are closed first (I4). */
int directing_remove(const char *name, struct buf *out);

/* ---- run-time backends and the config ------------------------------------ */

/* The proxy rebuilds its configuration (re-reads the file, adds run-time
 * backends) when the backend set changes; main() installs how. The hook
 * may be called from any thread. */
typedef void directing_reconfigure_fn(const char *why);
void directing_set_reconfigure(directing_reconfigure_fn *fn);
void directing_request_reconfigure(const char *why);
/* Appends the run-time backends to freshly loaded settings. */
struct proxy_settings;
void directing_runtime_apply(struct proxy_settings *set);
bool directing_has_runtime_backends(void);
/* The director's side of add/remove alone (the shared store's events). */
int directing_add_local(const char *host, unsigned int weight);
bool directing_remove_local(const char *name);

#endif
