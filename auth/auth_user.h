#ifndef MR_AUTH_USER_H
#define MR_AUTH_USER_H

#include <stdbool.h>
#include <stddef.h>

#include "str.h"

/* Login name validation and normalisation (Dovecot's auth_username_chars
 * and auth_username_format).
 *
 * Whatever the configuration says, a name containing NUL, CR, LF or any
 * other control character, DEL, a space, a double or single quote, a
 * backslash or a byte >= 0x80 is always rejected: such names can break the
 * protocols and logs that carry them. */

/* Dovecot's default auth_username_chars. */
#define AUTH_USER_DEFAULT_CHARS                                                \
	"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01234567890.-_@"
/* Dovecot 2.3's default auth_username_format: lower-case the whole name. */
#define AUTH_USER_DEFAULT_FORMAT "%Lu"
#define AUTH_USER_DEFAULT_MAX_LEN 255
/* No configuration can allow longer names. */
#define AUTH_USER_MAX_LEN 1024

struct auth_user_rules;

/* Compiles the rules. chars: the allowed characters (NULL = the Dovecot
 * default, "" = every character not in the always-forbidden set). format:
 * one of "%u" (as is), "%Lu" (lower-case), "%n" (drop "@domain"), "%Ln",
 * or the long forms "%{user}", "%L{user}", "%{username}", "%L{username}";
 * NULL = "%Lu". max_len: 1..AUTH_USER_MAX_LEN, 0 = the default. Returns
 * NULL with a static *error_r for an unsupported format or length. */
struct auth_user_rules *auth_user_rules_new(const char *chars,
					    const char *format, size_t max_len,
					    const char **error_r);
/* Frees *rules and sets it to NULL; safe on NULL. */
void auth_user_rules_free(struct auth_user_rules **rules);

/* Validates the login name user and writes its normalised form, NUL-
 * terminated, into out (outsize must be at least max_len + 1). Returns 0,
 * or -1 with a static *error_r ("empty", "too long", "invalid character")
 * and out emptied. The error never quotes the name: sanitise it with
 * str_sanitize() before logging it. */
int auth_user_normalize(const struct auth_user_rules *rules, struct str user,
			char *out, size_t outsize, const char **error_r);

/* True for bytes that can never be part of a user name (see above). */
bool auth_user_char_forbidden(unsigned char c);

/* Splits user at its first '@' into name (Dovecot %n) and domain (%d).
 * Returns false when there is no '@': name is then user, domain empty. */
bool auth_user_split(struct str user, struct str *name_r, struct str *domain_r);

#endif
