#ifndef MR_PASSDB_H
#define MR_PASSDB_H

#include <stdint.h>

#include "auth_fields.h"

/* Password database drivers behind a small vtable, so that LDAP, SQL or an
 * existing Dovecot auth service can follow passwd-file. */

/* What a driver is asked for. All strings are valid during the call. */
struct passdb_request {
	const char *user;       /* normalised login name */
	const char *service;    /* "imap", "pop3", "lmtp"... */
	const char *client_ip;  /* textual, NULL when none */
	const char *session_id; /* for the driver's own logs, may be NULL */
	uint64_t now_ms;        /* monotonic clock */
};

/* What a driver returns for a user it found. The driver fills it with heap
 * data that passdb_entry_clear() releases. */
struct passdb_entry {
	/* "{SCHEME}hash", or a bare hash in default_scheme; NULL = none */
	char *password;
	/* scheme for a password without a "{SCHEME}" prefix; static or owned
	 * by the driver instance, never freed by the caller */
	const char *default_scheme;
	struct auth_fields *fields;        /* passdb extra fields, never NULL */
	struct auth_fields *userdb_fields; /* userdb_* fields, never NULL */
	/* something the admin should hear about even though the lookup
	 * worked (e.g. a reload failed and old data was used); malloc'd or
	 * NULL */
	char *warning;
};

/* Wipes the password and frees everything in entry (not entry itself). */
void passdb_entry_clear(struct passdb_entry *entry);

enum passdb_result {
	PASSDB_TEMPFAIL = -1,    /* the database could not answer */
	PASSDB_USER_UNKNOWN = 0, /* no such user */
	PASSDB_USER_FOUND = 1,   /* entry filled */
};

struct passdb_driver {
	const char *name;
	/* Creates an instance from the driver's argument string (Dovecot's
	 * passdb "args"). Returns 0, or -1 with a malloc'd *error_r. */
	int (*init)(const char *args, void **ctx_r, char **error_r);
	/* Looks a user up. Called from several worker threads at once, so it
	 * must be thread-safe; it may block (file, network). On
	 * PASSDB_TEMPFAIL *error_r gets a malloc'd reason. */
	enum passdb_result (*lookup)(void *ctx,
				     const struct passdb_request *request,
				     struct passdb_entry *entry_r,
				     char **error_r);
	/* Frees the instance and sets *ctx to NULL. */
	void (*deinit)(void **ctx);
	/* Optional (may be NULL): a number that changes whenever the data may
	 * have changed (a reloaded file), so that caches can be flushed.
	 * Thread-safe. */
	uint64_t (*generation)(void *ctx);
};

extern const struct passdb_driver passdb_driver_passwd_file;

/* The driver called name, or NULL. */
const struct passdb_driver *passdb_driver_find(const char *name);

#endif
