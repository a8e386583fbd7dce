#ifndef MR_AUTH_FIELDS_H
#define MR_AUTH_FIELDS_H

#include <stdbool.h>
#include <stddef.h>

#include "str.h"

/* An owned, ordered set of passdb/userdb extra fields: "key=value" or a bare
 * "key" (a flag such as nologin or proxy). Keys are unique and compared
 * exactly; setting a key again replaces its value. Values may be secrets
 * (pass=), so everything is wiped when freed. */
struct auth_fields;

struct auth_fields *auth_fields_new(void);
/* Wipes and frees *fields, sets it to NULL; safe on NULL. */
void auth_fields_free(struct auth_fields **fields);
/* Returns a deep copy (NULL when fields is NULL). */
struct auth_fields *auth_fields_dup(const struct auth_fields *fields);

/* Sets key to value; value NULL makes a bare key. The key must be non-empty.
 * Both are copied. */
void auth_fields_set(struct auth_fields *fields, struct str key,
		     const struct str *value);
/* Convenience for NUL-terminated strings; value NULL makes a bare key. */
void auth_fields_set_cstr(struct auth_fields *fields, const char *key,
			  const char *value);
/* Removes key if present. */
void auth_fields_remove(struct auth_fields *fields, const char *key);

/* True when key is present (with or without a value). NULL fields are
 * empty. */
bool auth_fields_has(const struct auth_fields *fields, const char *key);
/* The value of key: NULL when absent, "" for a bare key. */
const char *auth_fields_get(const struct auth_fields *fields, const char *key);

/* Number of fields, and the i-th in insertion order (i < count). *value_r is
 * NULL for a bare key. */
size_t auth_fields_count(const struct auth_fields *fields);
void auth_fields_at(const struct auth_fields *fields, size_t i,
		    const char **key_r, const char **value_r);

/* Approximate heap bytes held, for cache accounting. */
size_t auth_fields_memsize(const struct auth_fields *fields);

#endif
