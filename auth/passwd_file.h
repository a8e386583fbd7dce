#ifndef MR_PASSWD_FILE_H
#define MR_PASSWD_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Dovecot's passwd-file format, one user per line:
 *
 *   user:password:uid:gid:gecos:home:shell:extra_fields
 *
 * Trailing fields may be left out ("user:password" alone is valid), empty
 * fields are "not set". Lines that are empty, blank or start with '#' are
 * skipped; a trailing CR is dropped. extra_fields (everything after the 7th
 * ':', so values may contain ':') is a space-separated list of "key=value"
 * or bare "key" items, e.g.
 *
 *   nologin reason=Moved host=10.0.0.5 port=143 user=canonical destuser=x
 *   pass=secret nopassword proxy director_tag=pool1 userdb_quota_rule=*:1G
 *
 * Keys starting with "userdb_" are kept apart with the prefix removed. As in
 * Dovecot, an empty 8th field followed by more text is the old format: the
 * rest becomes the userdb field "mail", and a password ending in "[NN]"
 * (libpam-pwdfile) is read as {CRYPT} (13), {PLAIN-MD5} (34) or
 * {DIGEST-MD5} (56).
 *
 * Stricter than Dovecot (a file is refused, naming the first bad line, rather
 * than silently serving something else): lines over the length limit, NUL
 * or control characters other than TAB, a line starting with ':' (no user
 * name), a user name with a character that can never log in (see
 * auth_user.h), an extra field without a name, and a user listed twice. */

struct passwd_file_settings {
	/* longest line in bytes, without the line end; 0 = 4096 */
	size_t max_line_len;
	/* largest file accepted; 0 = 64 MiB */
	size_t max_file_size;
	/* look user names up ASCII-case-insensitively */
	bool case_insensitive;
	/* passwd_file_refresh() stat()s the file at most this often */
	uint32_t refresh_interval_ms;
};

#define PASSWD_FILE_DEFAULT_MAX_LINE 4096
#define PASSWD_FILE_DEFAULT_MAX_SIZE (64u * 1024 * 1024)
#define PASSWD_FILE_DEFAULT_REFRESH_MS 1000

/* Fills set with the defaults above (case-sensitive, like Dovecot). */
void passwd_file_settings_init(struct passwd_file_settings *set);

struct passwd_field {
	const char *key;
	const char *value; /* NULL for a bare key */
};

/* One user. Every pointer is owned by its table and stays valid while the
 * caller holds a reference to the table. */
struct passwd_entry {
	const char *user;
	const char *password; /* NULL when empty or absent */
	const char *uid, *gid, *gecos, *home, *shell; /* NULL when empty */
	const struct passwd_field *fields; /* passdb extra fields, file order */
	size_t field_count;
	const struct passwd_field *userdb_fields; /* "userdb_" stripped */
	size_t userdb_field_count;
	unsigned int line; /* line number in the file */
};

/* An immutable parsed file, reference-counted so that readers in several
 * threads can keep using it while a reload swaps in a new one. */
struct passwd_table;

/* Parses size bytes of data (need not be NUL-terminated, may contain any
 * byte). name is used in messages (a path, or e.g. "<memory>"); set NULL
 * takes the defaults. Returns a table with one reference, or NULL with
 * *error_r set to a malloc'd "name:line: message" the caller frees. */
struct passwd_table *passwd_table_parse(const void *data, size_t size,
					const char *name,
					const struct passwd_file_settings *set,
					char **error_r);
/* Reference counting (thread-safe). unref wipes and frees the table when the
 * last reference goes, and sets *table to NULL; safe on NULL. */
void passwd_table_ref(struct passwd_table *table);
void passwd_table_unref(struct passwd_table **table);
/* The entry for user (exact or ASCII-case-insensitive, per the settings), or
 * NULL. */
const struct passwd_entry *passwd_table_lookup(const struct passwd_table *table,
					       const char *user);
size_t passwd_table_count(const struct passwd_table *table);

/* A passwd-file on disk that reloads itself when it changes. All functions
 * are thread-safe. */
struct passwd_file;

/* Loads path. Returns NULL with a malloc'd *error_r when the file cannot be
 * read or parsed. */
struct passwd_file *passwd_file_open(const char *path,
				     const struct passwd_file_settings *set,
				     char **error_r);
/* Frees *pf (tables still referenced by readers live on) and sets it NULL. */
void passwd_file_close(struct passwd_file **pf);

/* Cheap change check: at most once per refresh interval (now_ms is a
 * monotonic clock in milliseconds) it stat()s the file and, when the inode,
 * size or mtime changed, reads and parses it and atomically swaps the table.
 * Returns 1 when a new table was installed, 0 when nothing changed (or the
 * interval has not passed, or another thread is reloading), -1 when the new
 * file could not be loaded: the old table stays in use and *error_r gets a
 * malloc'd message. A broken file is reported once, not at every check,
 * until it changes again. A rewrite that keeps the inode, the size and the
 * mtime (within the file system's timestamp granularity) goes unnoticed:
 * replace the file with rename(), as editors and config tools do. */
int passwd_file_refresh(struct passwd_file *pf, uint64_t now_ms,
			char **error_r);
/* The current table with a new reference: the caller unrefs it. */
struct passwd_table *passwd_file_get_table(struct passwd_file *pf);
/* Increases each time a new table is installed (starts at 1). */
uint64_t passwd_file_generation(struct passwd_file *pf);

#endif
