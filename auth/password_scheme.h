#ifndef MR_PASSWORD_SCHEME_H
#define MR_PASSWORD_SCHEME_H

#include <stdbool.h>
#include <stddef.h>

/* Password schemes in Dovecot's "{SCHEME}value" notation.
 *
 * Verified schemes (names are case-insensitive):
 *   PLAIN, CLEARTEXT, CLEAR      the password itself
 *   CRYPT, DES-CRYPT             any crypt(3) hash libxcrypt knows: DES, $1$,
 *                                $5$, $6$, $2a$/$2b$/$2y$, $y$ (yescrypt)...
 *   MD5-CRYPT, SHA256-CRYPT, SHA512-CRYPT, BLF-CRYPT
 *                                crypt(3) as well (like Dovecot, the label
 *                                does not restrict the hash's own prefix)
 *   MD5                          $1$ crypt, else PLAIN-MD5
 *   SHA, SHA1, SHA256, SHA512    unsalted digest, base64
 *   PLAIN-MD5 (hex), LDAP-MD5 (base64)
 *   SSHA, SSHA256, SSHA512, SMD5 base64(digest(password || salt) || salt)
 * A ".HEX", ".B64" or ".BASE64" suffix selects the encoding of the digest
 * schemes; without it a value of exactly twice the digest length is read as
 * hex, as Dovecot does. A stored value "$1$salt$hash" without braces is
 * MD5-CRYPT, again as in Dovecot.
 *
 * crypt(3) runs through crypt_rn() with a private struct crypt_data per call
 * and every comparison is constant-time, so all functions here are
 * thread-safe. Copies of secrets are wiped before they are freed. */

/* A plaintext longer than this never matches (it would only let a client
 * make SHA-crypt spend more time). */
#define PASSWORD_MAX_LEN 1024

enum password_result {
	/* the hash is well-formed and the password is wrong */
	PASSWORD_MISMATCH = 0,
	/* the password matches */
	PASSWORD_MATCH = 1,
	/* the scheme (or its encoding suffix) is not known */
	PASSWORD_UNKNOWN_SCHEME = -1,
	/* the stored value cannot be a hash of its scheme (bad base64, too
	 * short for SSHA, invalid crypt setting...) */
	PASSWORD_MALFORMED = -2,
	/* crypt or OpenSSL failed for another reason */
	PASSWORD_INTERNAL = -3,
};

/* Verifies plaintext (NUL-terminated; callers reject passwords containing
 * NUL before they get here) against stored, which is "{SCHEME}value", or a
 * bare value hashed with default_scheme (NULL means "CRYPT", Dovecot's
 * passwd-file default). An empty stored value never matches anything.
 * *error_r (may be NULL) receives a static explanation for every result but
 * PASSWORD_MATCH; it never contains the password or the hash. */
enum password_result password_verify(const char *plaintext, const char *stored,
				     const char *default_scheme,
				     const char **error_r);

/* True when name, with an optional encoding suffix, is a scheme that
 * password_verify understands (for checking configuration at start-up). */
bool password_scheme_is_known(const char *name);

/* Makes a new "{SCHEME}value" hash of plaintext with a fresh random salt.
 * Supported: SHA512-CRYPT, SHA256-CRYPT, MD5-CRYPT, BLF-CRYPT (as $2y$),
 * CRYPT (libxcrypt's preferred method, yescrypt), SSHA, SSHA256, SSHA512,
 * SMD5, SHA, SHA1, SHA256, SHA512, PLAIN-MD5, LDAP-MD5, PLAIN, CLEARTEXT,
 * with the same encoding suffixes as above. rounds is the crypt cost (rounds
 * for SHA*-CRYPT, log2 cost for BLF-CRYPT); 0 takes libxcrypt's default.
 * Returns a malloc'd string the caller frees, or NULL with a static
 * *error_r for an unknown or non-generatable scheme, a bad rounds value or a
 * plaintext longer than PASSWORD_MAX_LEN. */
char *password_generate(const char *plaintext, const char *scheme,
			unsigned int rounds, const char **error_r);

/* A short name for r ("match", "mismatch", "unknown scheme", ...). */
const char *password_result_str(enum password_result r);

#endif
