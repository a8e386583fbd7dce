#ifndef MR_AUTH_CACHE_H
#define MR_AUTH_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth_fields.h"

/* A bounded cache of passdb results keyed by the normalised user name.
 *
 * A positive entry keeps the passdb fields and, when the lookup verified a
 * password, a salted keyed hash of that password (SHA-256 over a per-cache
 * random key, a per-entry random salt and the password; never the
 * plaintext).
 * A login with the same password is then answered without running crypt
 * again; any other password is a miss, so the caller asks the passdb (the
 * password may have changed). A negative entry remembers "unknown user".
 *
 * Entries expire after ttl_ms (negative_ttl_ms for negative ones); the least
 * recently used entries are evicted when max_entries or max_bytes would be
 * passed. Time is passed in by the caller (monotonic milliseconds).
 *
 * NOT thread-safe: use one per thread, or hold a mutex around every call
 * (auth.c does the latter). */

struct auth_cache_settings {
	uint64_t ttl_ms;          /* positive entries; 0 = do not cache them */
	uint64_t negative_ttl_ms; /* unknown users; 0 = do not cache them */
	size_t max_entries;       /* 0 = no limit by count */
	size_t max_bytes;         /* 0 = no limit by size */
};

#define AUTH_CACHE_DEFAULT_TTL_MS (60u * 60 * 1000)
#define AUTH_CACHE_DEFAULT_NEGATIVE_TTL_MS (5u * 60 * 1000)
#define AUTH_CACHE_DEFAULT_MAX_ENTRIES 100000
#define AUTH_CACHE_DEFAULT_MAX_BYTES (16u * 1024 * 1024)

/* Fills set with the defaults above. */
void auth_cache_settings_init(struct auth_cache_settings *set);

enum auth_cache_result {
	/* nothing usable cached */
	AUTH_CACHE_MISS = 0,
	/* positive entry, and the password matched (or none was asked for):
	 * *fields_r is a copy the caller frees */
	AUTH_CACHE_HIT,
	/* negative entry: the user is unknown */
	AUTH_CACHE_HIT_UNKNOWN,
};

struct auth_cache;

struct auth_cache *auth_cache_new(const struct auth_cache_settings *set);
/* Wipes and frees everything, sets *cache to NULL; safe on NULL. */
void auth_cache_free(struct auth_cache **cache);

/* Looks user up at time now_ms. password NULL asks only whether the user
 * exists (a lookup without a password, e.g. for LMTP): any positive entry
 * hits. Otherwise a positive entry hits only when it holds a verified
 * password and password matches it (constant-time). Expired entries are
 * dropped. On AUTH_CACHE_HIT, *fields_r and *userdb_fields_r (either may be
 * NULL when not wanted) receive copies of the cached fields. */
enum auth_cache_result auth_cache_lookup(struct auth_cache *cache,
					 const char *user, const char *password,
					 uint64_t now_ms,
					 struct auth_fields **fields_r,
					 struct auth_fields **userdb_fields_r);

/* Stores a positive entry for user, replacing any older one. password is
 * the plaintext that was just verified (NULL when none was: the entry then
 * only answers password-less lookups); fields and userdb_fields are copied
 * (NULL = none). Does nothing when ttl_ms is 0 or the entry alone is larger
 * than max_bytes. */
void auth_cache_put(struct auth_cache *cache, const char *user,
		    const char *password, const struct auth_fields *fields,
		    const struct auth_fields *userdb_fields, uint64_t now_ms);
/* Stores a negative (unknown user) entry, unless negative_ttl_ms is 0. */
void auth_cache_put_unknown(struct auth_cache *cache, const char *user,
			    uint64_t now_ms);
/* Drops user's entry, or all entries. */
void auth_cache_remove(struct auth_cache *cache, const char *user);
void auth_cache_clear(struct auth_cache *cache);

struct auth_cache_stats {
	size_t entries;
	size_t bytes;
	uint64_t hits, misses, evictions;
};
void auth_cache_get_stats(const struct auth_cache *cache,
			  struct auth_cache_stats *stats_r);

#endif
