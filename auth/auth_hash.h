#ifndef MR_AUTH_HASH_H
#define MR_AUTH_HASH_H

#include <stddef.h>
#include <stdint.h>

/* Keyed hashing for the auth tables (passwd-file index, cache, penalties):
 * SipHash-2-4, so that user names chosen by an attacker cannot be picked to
 * collide in a table. */

#define AUTH_HASH_KEY_SIZE 16

/* SipHash-2-4 of data under a 16-byte key. */
uint64_t auth_hash(const uint8_t key[AUTH_HASH_KEY_SIZE], const void *data,
		   size_t len);

/* Fills key with random bytes from OpenSSL's CSPRNG; aborts the process when
 * no randomness is available (a broken system, not a recoverable error). */
void auth_hash_random_key(uint8_t key[AUTH_HASH_KEY_SIZE]);

/* Fills buf with len random bytes; aborts like auth_hash_random_key. */
void auth_random_bytes(void *buf, size_t len);

#endif
