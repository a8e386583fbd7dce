#include "passdb_settings.h"

#define P struct passdb_settings
static const struct config_def passdb_defs[] = {
	CONFIG_DEF_STRING(P, "driver", driver, "passwd-file",
			  "passdb driver: passwd-file"),
	CONFIG_DEF_STRING(P, "args", args, NULL,
			  "Dovecot's passdb args: [scheme=SHA512-CRYPT] /path/to/passwd"),
	CONFIG_DEF_END,
};
#undef P

const struct config_section passdb_settings_section =
	CONFIG_SECTION(struct passdb_settings, passdb_defs);
