/*
 * libFuzzer target for the passwd-file parser: the input is a passwd-file.
 * Invariants checked beyond "no crash, no leak":
 *   - failure gives a "name:line: message" (or "name: message") error,
 *     success none;
 *   - after a successful parse, the user of every one of the first lines
 *     that is not blank or a comment is found, with that exact name, and
 *     all of its fields are readable;
 *   - the case-insensitive table finds the same users in upper case.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/passwd_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK_LINES 16

static void fz_assert(bool cond)
{
	if (!cond)
		abort();
}

static void touch_fields(const struct passwd_field *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		fz_assert(f[i].key[0] != '\0');
		(void)strlen(f[i].key);
		if (f[i].value != NULL)
			(void)strlen(f[i].value);
	}
}

static void check_users(const struct passwd_table *t, const uint8_t *data,
			size_t size, bool folded)
{
	size_t pos = 0;
	char user[PASSWD_FILE_DEFAULT_MAX_LINE + 1];

	for (int n = 0; n < FZ_CHECK_LINES && pos < size; n++) {
		const uint8_t *line = data + pos;
		const uint8_t *nl = memchr(line, '\n', size - pos);
		size_t len = nl != NULL ? (size_t)(nl - line) : size - pos;
		pos += len + (nl != NULL ? 1 : 0);
		if (len > 0 && line[len - 1] == '\r')
			len--;
		bool blank = true;
		for (size_t i = 0; i < len; i++) {
			if (line[i] != ' ' && line[i] != '\t')
				blank = false;
		}
		if (blank || line[0] == '#')
			continue;
		size_t ulen = 0;
		while (ulen < len && line[ulen] != ':')
			ulen++;
		memcpy(user, line, ulen);
		user[ulen] = '\0';
		if (folded) {
			for (size_t i = 0; i < ulen; i++) {
				if (user[i] >= 'a' && user[i] <= 'z')
					user[i] = (char)(user[i] - 'a' + 'A');
			}
		}
		const struct passwd_entry *e = passwd_table_lookup(t, user);
		fz_assert(e != NULL);
		fz_assert(folded ? strcasecmp(e->user, user) == 0
				 : strcmp(e->user, user) == 0);
		touch_fields(e->fields, e->field_count);
		touch_fields(e->userdb_fields, e->userdb_field_count);
		if (e->password != NULL)
			fz_assert(e->password[0] != '\0');
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct passwd_file_settings set;
	char *error = NULL;

	passwd_file_settings_init(&set);
	set.max_file_size = 1024 * 1024;
	struct passwd_table *t =
	    passwd_table_parse(data, size, "fuzz", &set, &error);
	if (t == NULL) {
		fz_assert(error != NULL && strncmp(error, "fuzz:", 5) == 0);
		free(error);
		return 0;
	}
	fz_assert(error == NULL);
	check_users(t, data, size, false);
	passwd_table_unref(&t);

	set.case_insensitive = true;
	t = passwd_table_parse(data, size, "fuzz", &set, &error);
	if (t == NULL) {
		/* only folding can make two names collide */
		fz_assert(error != NULL &&
			  strstr(error, "exists more than once") != NULL);
		free(error);
		return 0;
	}
	check_users(t, data, size, true);
	passwd_table_unref(&t);
	return 0;
}
