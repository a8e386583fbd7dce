#ifndef MR_CONFIG_H
#define MR_CONFIG_H

/*
 * The configuration file format and a schema-driven loader for every
 * daemon.
 *
 *   # comment (anywhere outside quotes)
 *   key = value                 bare text, trimmed
 *   key = "a \"quoted\" \\ value"
 *   list_key = a, b "c d"       lists: whitespace/comma separated items
 *   section_type [name] {       named sections may repeat (an array);
 *     key = value               unnamed ones are single nested blocks
 *   }
 *   !include conf.d/mail*.conf  relative to the including file; glob(3),
 *   !include_try local.conf     sorted; _try ignores missing files
 *
 * A daemon describes its settings struct with static tables (see the
 * CONFIG_DEF_* macros): each setting has a key, a type, a default written
 * in config syntax, the offset of its field and a one-line help text.
 * Loading applies the defaults, then the file; unknown keys and sections,
 * duplicate keys in one block, duplicate section names and bad values are
 * errors reported as "file:line: message". Loading touches no global
 * state, so a daemon can load a fresh struct on SIGHUP and swap it in.
 *
 * Field types (checked at compile time by the macros):
 *   STRING   char *            never NULL after a load ("" when empty)
 *   BOOL     bool              yes/no, true/false, on/off, 1/0
 *   UINT     uint64_t          decimal
 *   SIZE     uint64_t          bytes: 512, 64k, 1M, 2G, 1T (b/kb/mb...
 *                              accepted; 1024 multiples; any case)
 *   DURATION uint64_t          milliseconds: 250ms, 30s, 15m, 2h, 1d, 1w
 *                              (plain number = seconds)
 *   ENUM     unsigned int      index into the NULL-terminated value list
 *   LIST     struct config_strlist
 *   NETS     struct config_nets   list of CIDR networks / addresses
 *   BLOCK    an embedded struct    unnamed section "type { }", once
 *   SECTIONS T *items + size_t count   named section "type name { }"
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "netmask.h"

struct sockaddr;

#define CONFIG_LINE_MAX 4096                /* bytes per line */
#define CONFIG_FILE_MAX (1024 * 1024)       /* bytes per file */
#define CONFIG_TOTAL_MAX (16 * 1024 * 1024) /* bytes over all includes */
#define CONFIG_INCLUDE_DEPTH_MAX 8          /* nested !include levels */
#define CONFIG_NEST_MAX 8                   /* nested section levels */
#define CONFIG_ERRORS_MAX 32                /* errors kept before giving up */

enum config_type {
	CONFIG_TYPE_STRING = 0, /* char * */
	CONFIG_TYPE_BOOL,       /* bool */
	CONFIG_TYPE_UINT,       /* uint64_t */
	CONFIG_TYPE_SIZE,       /* uint64_t, bytes */
	CONFIG_TYPE_DURATION,   /* uint64_t, milliseconds */
	CONFIG_TYPE_ENUM,       /* unsigned int */
	CONFIG_TYPE_LIST,       /* struct config_strlist */
	CONFIG_TYPE_NETS,       /* struct config_nets */
	CONFIG_TYPE_BLOCK,      /* embedded struct, unnamed section */
	CONFIG_TYPE_SECTIONS,   /* array of structs, named sections */
};

struct config_strlist {
	char **items;
	size_t count;
};

struct config_nets {
	struct netmask *nets;
	size_t count;
};

struct config_section;

/* One setting (or section type) of a block. Use the CONFIG_DEF_* macros. */
struct config_def {
	const char *key;
	enum config_type type;
	const char *default_value;      /* config syntax; NULL = empty/0 */
	size_t offset;                  /* of the field in the struct */
	size_t count_offset;            /* SECTIONS: of the size_t count */
	const char *const *enum_values; /* ENUM: NULL-terminated */
	uint64_t min, max;              /* UINT/SIZE/DURATION; max 0 = none */
	const struct config_section *section; /* BLOCK and SECTIONS */
	const char *help;
};

/* The schema of one block: the root settings struct or a section's. */
struct config_section {
	size_t struct_size;
	bool named;         /* SECTIONS items: the name is stored at */
	size_t name_offset; /* name_offset as a char * */
	const struct config_def *defs; /* ends with CONFIG_DEF_END */
};

/* Compile-time check that stype.field has type ctype; evaluates to 0. */
#define CONFIG_FIELD_CHECK_(stype, field, ctype)                               \
	(0 * sizeof(char[_Generic(((stype *)0)->field, ctype : 1, default      \
				  : -1)]))
/* Compile-time check that stype.field is pointer-sized; evaluates to 0. */
#define CONFIG_PTR_CHECK_(stype, field)                                        \
	(0 *                                                                   \
	 sizeof(char[sizeof(((stype *)0)->field) == sizeof(void *) ? 1 : -1]))
#define CONFIG_DEF_(k, t, stype, field, ctype, def, mn, mx, h)                 \
	{                                                                      \
		.key = (k), .type = (t), .default_value = (def),               \
		.offset = offsetof(stype, field) +                             \
			  CONFIG_FIELD_CHECK_(stype, field, ctype),            \
		.min = (mn), .max = (mx), .help = (h)                          \
	}

#define CONFIG_DEF_STRING(stype, key, field, def, help)                        \
	CONFIG_DEF_(key, CONFIG_TYPE_STRING, stype, field, char *, def, 0, 0,  \
		    help)
#define CONFIG_DEF_BOOL(stype, key, field, def, help)                          \
	CONFIG_DEF_(key, CONFIG_TYPE_BOOL, stype, field, bool, def, 0, 0, help)
#define CONFIG_DEF_UINT(stype, key, field, def, min, max, help)                \
	CONFIG_DEF_(key, CONFIG_TYPE_UINT, stype, field, uint64_t, def, min,   \
		    max, help)
#define CONFIG_DEF_SIZE(stype, key, field, def, min, max, help)                \
	CONFIG_DEF_(key, CONFIG_TYPE_SIZE, stype, field, uint64_t, def, min,   \
		    max, help)
#define CONFIG_DEF_DURATION(stype, key, field, def, min, max, help)            \
	CONFIG_DEF_(key, CONFIG_TYPE_DURATION, stype, field, uint64_t, def,    \
		    min, max, help)
#define CONFIG_DEF_LIST(stype, key, field, def, help)                          \
	CONFIG_DEF_(key, CONFIG_TYPE_LIST, stype, field,                       \
		    struct config_strlist, def, 0, 0, help)
#define CONFIG_DEF_NETS(stype, key, field, def, help)                          \
	CONFIG_DEF_(key, CONFIG_TYPE_NETS, stype, field, struct config_nets,   \
		    def, 0, 0, help)
/* values: static const char *const x[] = { "no", "yes", NULL }; the field
 * gets the index of the value; def NULL means the first value. */
#define CONFIG_DEF_ENUM(stype, k_, field, def, values, h_)                     \
	{                                                                      \
		.key = (k_), .type = CONFIG_TYPE_ENUM, .default_value = (def), \
		.offset = offsetof(stype, field) +                             \
			  CONFIG_FIELD_CHECK_(stype, field, unsigned int),     \
		.enum_values = (values), .help = (h_)                          \
	}
/* An unnamed section `key { ... }` stored in the embedded struct field,
 * described by *sect (not named). */
#define CONFIG_DEF_BLOCK(stype, k_, field, sect, h_)                           \
	{                                                                      \
		.key = (k_), .type = CONFIG_TYPE_BLOCK,                        \
		.offset = offsetof(stype, field), .section = (sect),           \
		.help = (h_)                                                   \
	}
/* Repeated named sections `key NAME { ... }`: field is a pointer to the
 * item struct described by *sect (named), count_field a size_t. */
#define CONFIG_DEF_SECTIONS(stype, k_, field, count_field, sect, h_)           \
	{                                                                      \
		.key = (k_), .type = CONFIG_TYPE_SECTIONS,                     \
		.offset =                                                      \
		    offsetof(stype, field) + CONFIG_PTR_CHECK_(stype, field),  \
		.count_offset =                                                \
		    offsetof(stype, count_field) +                             \
		    CONFIG_FIELD_CHECK_(stype, count_field, size_t),           \
		.section = (sect), .help = (h_)                                \
	}
#define CONFIG_DEF_END                                                         \
	{                                                                      \
		.key = NULL                                                    \
	}

#define CONFIG_SECTION(stype, defs_)                                           \
	{                                                                      \
		.struct_size = sizeof(stype), .defs = (defs_)                  \
	}
#define CONFIG_SECTION_NAMED(stype, name_field, defs_)                         \
	{                                                                      \
		.struct_size = sizeof(stype), .named = true,                   \
		.name_offset = offsetof(stype, name_field) +                   \
			       CONFIG_FIELD_CHECK_(stype, name_field, char *), \
		.defs = (defs_)                                                \
	}

/* Errors of one load, each "file:line: message" (or "file: message"). */
struct config_errors {
	char **lines;
	size_t count;
};

/* Frees the lines and empties the list; safe on an empty list. */
void config_errors_free(struct config_errors *errors);

/* Flags for config_load_buffer. */
#define CONFIG_LOAD_NO_INCLUDE 0x01 /* "!include" is an error (fuzzing) */

/* Fills set (schema->struct_size bytes; its old contents are ignored) with
 * the defaults and then the settings of the file at path.
 * Returns 0 on success (errors_r empty). Returns -1 with at least one
 * error in errors_r, set left zeroed and owning nothing; the caller frees
 * errors_r with config_errors_free() either way. */
int config_load_file(const struct config_section *schema, const char *path,
		     void *set, struct config_errors *errors_r);

/* Same for size bytes in memory; name is used in messages and its
 * directory as the base of relative includes. */
int config_load_buffer(const struct config_section *schema, const char *name,
		       const void *data, size_t size, unsigned int flags,
		       void *set, struct config_errors *errors_r);

/* Fills set with the defaults only. Returns -1 with errors_r when a
 * default does not parse (a bug in the schema). */
int config_load_defaults(const struct config_section *schema, void *set,
			 struct config_errors *errors_r);

/* Frees the strings, lists and section arrays owned by set and zeroes it. */
void config_free(const struct config_section *schema, void *set);

/* Prints, in config syntax, the settings (sections included) whose value
 * differs from the default: what "-n" shows. Named sections are always
 * printed, blocks only when something inside differs. */
void config_print_nondefault(const struct config_section *schema,
			     const void *set, FILE *out);
/* Prints every setting: what "-a" shows. */
void config_print_all(const struct config_section *schema, const void *set,
		      FILE *out);

/* True when sa lies in one of the networks. */
bool config_nets_match(const struct config_nets *nets,
		       const struct sockaddr *sa);

/* ---- the common command line of the daemons ----
 *
 *   while ((c = getopt(argc, argv, CONFIG_CLI_OPTS "d")) != -1) {
 *           if (config_cli_option(&cli, c, optarg))
 *                   continue;
 *           ...own options...
 *   }
 *   int ret = config_cli_run(&cli, &proxy_schema, &set, stdout, stderr);
 *   if (ret <= 0)
 *           exit(ret == 0 ? 0 : 1);
 */

#define CONFIG_CLI_OPTS "c:tna"

struct config_cli {
	const char *path;      /* -c FILE, or the daemon's default */
	bool test;             /* -t: check the file, print errors, exit */
	bool print_nondefault; /* -n */
	bool print_all;        /* -a */
};

/* Records option c (one of CONFIG_CLI_OPTS, with arg for -c). Returns
 * false when c is not one of ours. */
bool config_cli_option(struct config_cli *cli, int c, const char *arg);

/* Loads cli->path into set. On errors prints them to err, one
 * "file:line: message" per line, and returns -1 (exit 1). With -t, -n or
 * -a: does what they ask (-n/-a print to out), frees set and returns 0
 * (exit 0). Otherwise returns 1: set is loaded and the daemon runs. */
int config_cli_run(const struct config_cli *cli,
		   const struct config_section *schema, void *set, FILE *out,
		   FILE *err);

#endif
