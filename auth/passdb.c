#include "passdb.h"

#include <stdlib.h>
#include <string.h>

#include "str.h"

static const struct passdb_driver *const passdb_drivers[] = {
    &passdb_driver_passwd_file,
};

const struct passdb_driver *passdb_driver_find(const char *name)
{
	if (name == NULL)
		return NULL;
	for (size_t i = 0;
	     i < sizeof(passdb_drivers) / sizeof(passdb_drivers[0]); i++) {
		if (strcmp(passdb_drivers[i]->name, name) == 0)
			return passdb_drivers[i];
	}
	return NULL;
}

void passdb_entry_clear(struct passdb_entry *entry)
{
	if (entry->password != NULL) {
		str_wipe(entry->password, strlen(entry->password));
		free(entry->password);
	}
	auth_fields_free(&entry->fields);
	auth_fields_free(&entry->userdb_fields);
	free(entry->warning);
	memset(entry, 0, sizeof(*entry));
}
