#ifndef MR_AUTH_PENALTY_H
#define MR_AUTH_PENALTY_H

#include <stddef.h>
#include <stdint.h>

/* Authentication failure penalties per client IP and per user, in the spirit
 * of Dovecot's anvil auth penalty.
 *
 * Each failure doubles the delay: the first gives base_ms, then 2 * base_ms,
 * 4 * base_ms... up to max_ms. A failure with the same password checksum as
 * the previous one of the same key does not grow the penalty (a client
 * retrying a stale password is not guessing), as in Dovecot. A key whose
 * last failure is older than decay_ms is forgotten. IPv6 clients are keyed
 * by their first ipv6_prefix_bits bits, so one host cannot escape by
 * rotating through its /64.
 *
 * Memory is fixed: at most max_entries keys (users are stored as keyed
 * 128-bit hashes, not strings); when full, the key with the oldest failure
 * is evicted. Time is passed in (monotonic milliseconds).
 *
 * NOT thread-safe: use one per thread or hold a mutex around every call
 * (auth.c does the latter). */

struct auth_penalty_settings {
	uint32_t base_ms;   /* delay after the first failure */
	uint32_t max_ms;    /* cap */
	uint64_t decay_ms;  /* forget a key after this long without failures */
	size_t max_entries; /* table size, >= 1 */
	unsigned int ipv6_prefix_bits; /* 1..128 */
};

#define AUTH_PENALTY_DEFAULT_BASE_MS 2000
#define AUTH_PENALTY_DEFAULT_MAX_MS 15000
#define AUTH_PENALTY_DEFAULT_DECAY_MS (60u * 60 * 1000)
#define AUTH_PENALTY_DEFAULT_MAX_ENTRIES 65536
#define AUTH_PENALTY_DEFAULT_IPV6_PREFIX 64

/* Fills set with the defaults above. */
void auth_penalty_settings_init(struct auth_penalty_settings *set);

struct auth_penalty;

/* Returns NULL with a static *error_r for invalid settings (max_entries 0,
 * base_ms 0 or above max_ms, a prefix outside 1..128). */
struct auth_penalty *auth_penalty_new(const struct auth_penalty_settings *set,
				      const char **error_r);
void auth_penalty_free(struct auth_penalty **penalty);

/* The delay (ms) to apply before answering a request from ip for user: the
 * larger of the two keys' penalties, 0 when neither has failed recently.
 * ip and user may be NULL or "" (that key is then ignored); ip is textual
 * IPv4 or IPv6 (anything else is keyed as an opaque string). */
uint32_t auth_penalty_get(struct auth_penalty *penalty, const char *ip,
			  const char *user, uint64_t now_ms);
/* Records a failed authentication for both keys. pw_checksum identifies the
 * password tried (e.g. a keyed hash of it; 0 = unknown, always counts). */
void auth_penalty_failure(struct auth_penalty *penalty, const char *ip,
			  const char *user, uint32_t pw_checksum,
			  uint64_t now_ms);
/* Records a success: the user's penalty is cleared. The IP's is not (one
 * valid account must not let a client reset its guessing penalty); it
 * decays with time. */
void auth_penalty_success(struct auth_penalty *penalty, const char *ip,
			  const char *user, uint64_t now_ms);
/* Number of keys currently tracked. */
size_t auth_penalty_count(const struct auth_penalty *penalty);

#endif
