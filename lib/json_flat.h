#ifndef MR_JSON_FLAT_H
#define MR_JSON_FLAT_H

/*
 * Small JSON readers and a writer for the admin API. Pure functions.
 *
 * json_flat_parse: the admin API's request bodies, flat objects
 *   {"backend":"b1","weight":50}
 * of strings and non-negative integers only. Strings are ASCII: escapes
 * \" \\ \/ \b \f \n \r \t and \uXXXX below 0x80 (not \u0000); raw control
 * bytes and raw bytes >= 0x80 are refused. Numbers are decimal without
 * sign, fraction, exponent or leading zeros, at most JSON_FLAT_NUMBER_MAX.
 * Keys are unique. Whitespace is allowed between tokens. Anything else
 * (nesting, arrays, true/false/null, trailing bytes) is an error.
 *
 * json_tree_parse: any JSON text into a tree, for the `mailring` CLI to
 * render the API's answers as tables. Bounded nesting depth; \uXXXX is
 * decoded to UTF-8 (surrogate pairs joined; \u0000 and lone surrogates
 * refused).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "str.h"

struct buf;

#define JSON_FLAT_FIELDS_MAX 16
#define JSON_FLAT_KEY_MAX 32      /* bytes of a key, with the NUL */
#define JSON_FLAT_VALUE_MAX 256   /* bytes of a string value, with the NUL */
#define JSON_FLAT_NUMBER_MAX 9007199254740991ULL /* 2^53 - 1 */
#define JSON_TREE_DEPTH_MAX 16

enum json_flat_type {
	JSON_FLAT_STRING = 0, /* str holds the decoded text */
	JSON_FLAT_NUMBER,     /* num holds the value */
};

struct json_flat_field {
	char key[JSON_FLAT_KEY_MAX];
	enum json_flat_type type;
	char str[JSON_FLAT_VALUE_MAX];
	uint64_t num;
};

struct json_flat {
	struct json_flat_field fields[JSON_FLAT_FIELDS_MAX];
	size_t count;
};

/* Parses in into *out. Returns 0, or -1 with a static message in *error_r
 * and the byte offset of the problem in *error_pos_r. */
int json_flat_parse(struct str in, struct json_flat *out, const char **error_r,
		    size_t *error_pos_r);
/* The field called key, or NULL. */
const struct json_flat_field *json_flat_find(const struct json_flat *j,
					     const char *key);
/* 1 with *value_r set when key is there as a string (resp. number), 0 when
 * it is missing, -1 when it has the other type. */
int json_flat_get_str(const struct json_flat *j, const char *key,
		      const char **value_r);
int json_flat_get_u64(const struct json_flat *j, const char *key,
		      uint64_t *value_r);

/* Appends s as a JSON string literal: '"', '\\' and bytes below 0x20 or
 * 0x7f and above are escaped (bytes >= 0x80 as \u00XX, so the output is
 * ASCII). Returns 0, or -1 when out's maximum is reached. */
int json_append_str(struct buf *out, struct str s);

/* ---- the generic tree ---------------------------------------------------- */

enum json_type {
	JSON_NULL = 0,
	JSON_FALSE,
	JSON_TRUE,
	JSON_NUMBER, /* text holds the number as written */
	JSON_STRING, /* text holds the decoded string (NUL-terminated) */
	JSON_ARRAY,  /* items[count] */
	JSON_OBJECT, /* keys[count], items[count], in input order */
};

struct json_value {
	enum json_type type;
	char *text;
	size_t count;
	char **keys;
	struct json_value *items;
};

/* Parses one JSON text. Returns the tree (free with json_tree_free), or
 * NULL with a static message in *error_r and the offset in *error_pos_r. */
struct json_value *json_tree_parse(struct str in, const char **error_r,
				   size_t *error_pos_r);
void json_tree_free(struct json_value **v);
/* The member key of an object, or NULL (also for a non-object). */
const struct json_value *json_tree_get(const struct json_value *obj,
				       const char *key);

#endif
