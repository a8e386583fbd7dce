#ifndef MR_RING_DIRECTOR_H
#define MR_RING_DIRECTOR_H

/*
 * The director's state for the embedded store: the backends with their
 * weight, tag and state, and the sticky user -> backend mappings.
 *
 * A mapping is made by a user's first successful login and holds while the
 * user has sessions (a count), and for user_expire after the last one ends.
 * While it holds, every new session of the user goes to the mapped backend
 * (invariant I1), whatever happens to weights or the backend set (I2): only
 * an explicit move, a flush, a removal, or the backend going down drops or
 * changes it (I4: the caller closes the old sessions first, which in one
 * process is synchronous).
 *
 * Placement of unmapped users is ring/placement.h over the backends that
 * are up, of the user's tag, with weight > 0 (drained = weight 0).
 *
 * Not thread-safe: the proxy serialises calls with one mutex (they happen
 * at login and logout, never per byte). Time is passed in (monotonic ms),
 * so expiry is testable and a wall-clock step never expires anything.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "str.h"

#define DIRECTOR_NAME_MAX 64
#define DIRECTOR_HOST_MAX 256

enum director_backend_state {
	DIRECTOR_BACKEND_UP = 0,  /* takes users */
	DIRECTOR_BACKEND_DOWN,    /* failed health checks, or `mailring down` */
};

struct director_backend_info {
	char name[DIRECTOR_NAME_MAX];
	char tag[DIRECTOR_NAME_MAX];
	char host[DIRECTOR_HOST_MAX];   /* "" = from the config file */
	uint32_t weight;                /* 0 = drained */
	enum director_backend_state state;
	unsigned int users;             /* mappings on it */
	unsigned int sessions;          /* open sessions through us */
};

enum director_route {
	DIRECTOR_ROUTE_NONE = 0,  /* no backend can take the user */
	DIRECTOR_ROUTE_MAPPED,    /* the user's mapping */
	DIRECTOR_ROUTE_HASHED,    /* placement (no mapping yet) */
};

struct director;

/* user_expire_msecs: how long a mapping outlives the user's last session. */
struct director *director_new(uint64_t user_expire_msecs);
void director_free(struct director **d);
/* Bounded-load placement: a new user skips a backend in its ranking whose
 * sessions exceed percent (e.g. 125) of its weight share of all sessions,
 * and goes to its next-best one. 0 (the default) turns it off. */
void director_set_max_load(struct director *d, unsigned int percent);

/* Backends. Names are unique; adding an existing name fails (-1). Removing
 * a backend drops its mappings; the caller kicks its sessions. */
int director_backend_add(struct director *d, const char *name, uint32_t weight,
			 const char *tag);
int director_backend_remove(struct director *d, const char *name);
int director_backend_set_weight(struct director *d, const char *name,
				uint32_t weight);
/* Going down drops the backend's mappings (I4); coming up changes nothing
 * for mapped users. Returns -1 for an unknown name. */
int director_backend_set_state(struct director *d, const char *name,
			       enum director_backend_state state);
/* Marks a backend as added at run time (`mailring add`) with its address,
 * so the state file keeps it across restarts. -1 for an unknown name. */
int director_backend_set_host(struct director *d, const char *name,
			      const char *host);
size_t director_backend_count(const struct director *d);
/* Fills info for backend i (0 <= i < count), in the order added. */
void director_backend_get(const struct director *d, size_t i,
			  struct director_backend_info *info_r);
bool director_backend_find(const struct director *d, const char *name,
			   struct director_backend_info *info_r);

/* Routes a login of user (the hash key: user or domain) with tag (NULL or
 * "" = untagged backends). Writes the backend name; for HASHED, up to
 * max_fallbacks more candidates in order go to fallbacks_r. */
enum director_route director_route(struct director *d, struct str user,
				   const char *tag, uint64_t now_msecs,
				   char backend_r[DIRECTOR_NAME_MAX],
				   char (*fallbacks_r)[DIRECTOR_NAME_MAX],
				   size_t max_fallbacks, size_t *fallback_count_r);

/* Placement alone (ignoring any mapping): the backend for user and up to
 * max_fallbacks more in order. HASHED, or NONE when no backend can take it. */
enum director_route director_place(const struct director *d, struct str user,
				   const char *tag,
				   char backend_r[DIRECTOR_NAME_MAX],
				   char (*fallbacks_r)[DIRECTOR_NAME_MAX],
				   size_t max_fallbacks, size_t *fallback_count_r);

/* A session of user started on backend: makes the mapping if there is none
 * (first writer wins) and counts the session. Returns the mapped backend's
 * name, which differs from backend only if a mapping to another backend
 * appeared meanwhile (the caller must then not keep this session: I1). */
const char *director_session_begin(struct director *d, struct str user,
				   const char *backend, uint64_t now_msecs);
/* A session on backend ended: the mapping expires user_expire after the
 * last one. A mapping to another backend (the user was moved while the
 * session closed) is not touched. */
void director_session_end(struct director *d, struct str user,
			  const char *backend, uint64_t now_msecs);

/* The mapping of user, if any: backend name and session count. */
bool director_user_lookup(const struct director *d, struct str user,
			  uint64_t now_msecs, char backend_r[DIRECTOR_NAME_MAX],
			  unsigned int *sessions_r);
/* Maps user to backend (kick-then-remap: the caller has closed the user's
 * sessions; the session count restarts at 0). -1 for an unknown backend. */
int director_move(struct director *d, struct str user, const char *backend,
		  uint64_t now_msecs);
/* Drops user's mapping if it points at backend and has no open session
 * (a backend that refuses connections must not hold idle users until
 * their mapping expires; I1 is safe, no session exists anywhere).
 * Returns true when it dropped one. */
bool director_unmap_idle(struct director *d, struct str user,
			 const char *backend);
/* Drops user's mapping whatever its sessions (a shared store moved the
 * user: the caller has closed them). Returns the sessions it had. */
unsigned int director_forget(struct director *d, struct str user);
/* The shared store says user is mapped to backend: records it (a cache of
 * the store), keeping the session count when the backend is the same.
 * When the cache had the user on another backend, *displaced_r gets its
 * session count (the caller closes those: the store wins, I1). -1 for an
 * unknown backend. */
int director_cache_set(struct director *d, struct str user, const char *backend,
		       uint64_t now_msecs, unsigned int *displaced_r);
/* Calls fn for each live mapping (the re-assertion after a store outage). */
void director_each_mapping(const struct director *d, uint64_t now_msecs,
			   void (*fn)(const char *user, const char *backend,
				      unsigned int sessions, void *ctx),
			   void *ctx);
/* Drops every mapping of backend; returns how many. */
unsigned int director_flush(struct director *d, const char *backend);
/* Calls fn for each mapped user of backend (e.g. `mailring users HOST`). */
void director_users(const struct director *d, const char *backend,
		    uint64_t now_msecs,
		    void (*fn)(const char *user, unsigned int sessions, void *ctx),
		    void *ctx);
/* Drops mappings whose expiry passed; returns how many. */
unsigned int director_expire(struct director *d, uint64_t now_msecs);
size_t director_mapping_count(const struct director *d);

/* The embedded store's state file: backends (weight, tag, state) and the
 * mappings with their remaining lifetime. Written to path.tmp, fsynced and
 * renamed over path, so a crash leaves the old or the new file, never a
 * torn one. Loading replaces backends of the same name and adds the
 * mappings (sessions are not persisted: after a restart every mapping
 * counts from its saved expiry, at least user_expire). Both return 0, or
 * -1 with a message in err. */
int director_save(const struct director *d, const char *path,
		  uint64_t now_msecs, char *err, size_t errsize);
int director_load(struct director *d, const char *path, uint64_t now_msecs,
		  char *err, size_t errsize);

#endif
