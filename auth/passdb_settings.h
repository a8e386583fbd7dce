#ifndef MR_AUTH_PASSDB_SETTINGS_H
#define MR_AUTH_PASSDB_SETTINGS_H

/* The `passdb { driver args }` block every daemon's config has, in
 * Dovecot's terms; its values go to struct auth_settings. */

#include "config.h"

struct passdb_settings {
	char *driver;  /* passwd-file */
	char *args;    /* [scheme=X] /path/to/passwd */
};

extern const struct config_section passdb_settings_section;

#endif
