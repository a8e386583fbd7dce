/* Fuzzes the Maildir file name parser (backend/maildir.c).
 *
 * A name that parses must rebuild: base + its flags gives a name that
 * parses again to the same base, size and flags (the flag letters come
 * out in canonical order, so building twice gives the same bytes). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/maildir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct maildir_name name, again;
	char built[MAILDIR_NAME_MAX + 1], built2[MAILDIR_NAME_MAX + 1];

	if (maildir_name_parse(str_from((const char *)data, size), &name, NULL) < 0)
		return 0;
	if (name.base.len == 0 || name.base.len > size)
		abort();
	int len = maildir_name_build(name.base, &name.flags, built, sizeof(built));
	if (len < 0)
		return 0; /* e.g. the base holds a ':' of another info kind */
	if (maildir_name_parse(str_from(built, (size_t)len), &again, NULL) < 0)
		abort();
	if (again.base.len != name.base.len ||
	    memcmp(again.base.p, name.base.p, name.base.len) != 0 ||
	    again.has_size != name.has_size || again.size != name.size ||
	    memcmp(&again.flags, &name.flags, sizeof(name.flags)) != 0)
		abort();
	int len2 = maildir_name_build(again.base, &again.flags, built2,
				      sizeof(built2));
	if (len2 != len || memcmp(built, built2, (size_t)len) != 0)
		abort();
	return 0;
}
