/*
 * Config parser: one pass over each file, line by line. A stack of frames
 * follows the open sections; each frame knows its schema, the struct being
 * filled and where each of its settings was first set (for duplicate
 * errors). Unknown or bad sections push a "skip" frame (schema NULL) so
 * their body is consumed without cascading errors. Includes are parsed in
 * place, in the frame that is open at the !include line, and must close
 * every section they open.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "str.h"
#include "xmalloc.h"

#define CONFIG_SECTIONS_MAX 4096 /* items of one named section type */
#define CFG_REASON_MAX 256
#define CFG_PRINT_MAX ((size_t)64 * 1024 * 1024)

struct cfg_seen {
	const char *file; /* NULL: not set in this block yet */
	unsigned int line;
};

struct cfg_frame {
	const struct config_section *schema; /* NULL: skipping the body */
	void *set;
	struct cfg_seen *seen; /* one per def of schema */
	const char *file;      /* where the section was opened */
	unsigned int line;
	char title[128]; /* "backend b1", sanitised, for messages */
};

struct cfg_file_id {
	dev_t dev;
	ino_t ino;
};

struct cfg_parser {
	struct config_errors *errors;
	unsigned int flags;
	bool gave_up;

	struct cfg_frame frames[CONFIG_NEST_MAX + 1];
	unsigned int depth;     /* frames in use; frames[0] is the root */
	unsigned int file_base; /* depth when the current file started */

	struct cfg_file_id files[CONFIG_INCLUDE_DEPTH_MAX + 1];
	unsigned int file_depth;
	size_t total_bytes;

	const char *cur_file; /* NULL before the first file */
	unsigned int cur_line;

	char **names; /* every file name seen, alive until the end */
	size_t names_count;
};

/* Temporary storage for one value of any non-section type. */
union cfg_value {
	char *s;
	bool b;
	uint64_t u;
	unsigned int e;
	struct config_strlist l;
	struct config_nets n;
};

static const char *const cfg_type_names[] = {
    [CONFIG_TYPE_STRING] = "string",     [CONFIG_TYPE_BOOL] = "boolean",
    [CONFIG_TYPE_UINT] = "number",       [CONFIG_TYPE_SIZE] = "size",
    [CONFIG_TYPE_DURATION] = "duration", [CONFIG_TYPE_ENUM] = "value",
    [CONFIG_TYPE_LIST] = "list",         [CONFIG_TYPE_NETS] = "network",
    [CONFIG_TYPE_BLOCK] = "section",     [CONFIG_TYPE_SECTIONS] = "section",
};

/* ---- errors ---------------------------------------------------------- */

void config_errors_free(struct config_errors *errors)
{
	for (size_t i = 0; i < errors->count; i++)
		free(errors->lines[i]);
	free(errors->lines);
	errors->lines = NULL;
	errors->count = 0;
}

static void cfg_errors_add(struct config_errors *errors, const char *line)
{
	errors->lines = xreallocarray(errors->lines, errors->count + 1,
				      sizeof(*errors->lines));
	errors->lines[errors->count++] = xstrdup(line);
}

static void cfg_verror_at(struct cfg_parser *p, const char *file,
			  unsigned int line, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

static void cfg_verror_at(struct cfg_parser *p, const char *file,
			  unsigned int line, const char *fmt, va_list ap)
{
	char msg[1024], full[1200];

	if (p->gave_up)
		return;
	if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
		msg[0] = '\0';
	if (file == NULL)
		str_copy(str_cstr(msg), full, sizeof(full));
	else if (line == 0)
		snprintf(full, sizeof(full), "%s: %s", file, msg);
	else
		snprintf(full, sizeof(full), "%s:%u: %s", file, line, msg);
	cfg_errors_add(p->errors, full);
	if (p->errors->count >= CONFIG_ERRORS_MAX) {
		cfg_errors_add(p->errors, "too many errors, giving up");
		p->gave_up = true;
	}
}

static void cfg_error_at(struct cfg_parser *p, const char *file,
			 unsigned int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void cfg_error_at(struct cfg_parser *p, const char *file,
			 unsigned int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cfg_verror_at(p, file, line, fmt, ap);
	va_end(ap);
}

/* An error at the line being parsed. */
static void cfg_error(struct cfg_parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void cfg_error(struct cfg_parser *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cfg_verror_at(p, p->cur_file, p->cur_line, fmt, ap);
	va_end(ap);
}

/* A log-safe, bounded copy of text for messages. */
static const char *cfg_safe(struct str s, char *dst, size_t dstsize)
{
	return str_sanitize(s, dst, dstsize);
}

/* ---- small helpers -------------------------------------------------- */

static void *cfg_field(void *set, size_t offset)
{
	return (char *)set + offset;
}

static const void *cfg_cfield(const void *set, size_t offset)
{
	return (const char *)set + offset;
}

static bool cfg_is_key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

static bool cfg_is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static const struct config_def *cfg_find_def(const struct config_section *s,
					     struct str key)
{
	for (const struct config_def *d = s->defs; d->key != NULL; d++) {
		if (str_eq(str_cstr(d->key), key))
			return d;
	}
	return NULL;
}

/* Levenshtein distance, or SIZE_MAX for long inputs. */
static size_t cfg_distance(struct str a, struct str b)
{
	size_t row[65];

	if (a.len > 64 || b.len > 64)
		return SIZE_MAX;
	for (size_t j = 0; j <= b.len; j++)
		row[j] = j;
	for (size_t i = 1; i <= a.len; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= b.len; j++) {
			size_t up = row[j];
			size_t cost = a.p[i - 1] == b.p[j - 1] ? 0 : 1;
			size_t best = diag + cost;
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[b.len];
}

/* Writes " (did you mean 'x'?)" for the closest def of the wanted kind,
 * or "" when nothing is close. */
static const char *cfg_suggest(const struct config_section *s, struct str key,
			       bool sections, char *dst, size_t dstsize)
{
	const char *best = NULL;
	size_t best_dist = 3;

	dst[0] = '\0';
	for (const struct config_def *d = s->defs; d->key != NULL; d++) {
		bool is_section = d->type == CONFIG_TYPE_BLOCK ||
				  d->type == CONFIG_TYPE_SECTIONS;
		if (is_section != sections)
			continue;
		size_t dist = cfg_distance(key, str_cstr(d->key));
		if (dist < best_dist && dist < key.len) {
			best = d->key;
			best_dist = dist;
		}
	}
	if (best != NULL)
		str_printf(dst, dstsize, " (did you mean '%s'?)", best);
	return dst;
}

/* ---- value text --------------------------------------------------------- */

/* Parses the quoted string at the start of s (s.p[0] == '"'). Returns 0
 * with an allocated *out_r and *used_r bytes consumed, or -1. */
static int cfg_quoted(struct str s, size_t *used_r, char **out_r, char *reason,
		      size_t rsize)
{
	char *out = xmalloc(s.len);
	size_t o = 0;

	for (size_t i = 1; i < s.len; i++) {
		char c = s.p[i];
		if (c == '"') {
			out[o] = '\0';
			*out_r = out;
			*used_r = i + 1;
			return 0;
		}
		if (c == '\\') {
			if (i + 1 >= s.len)
				break;
			c = s.p[++i];
			if (c != '"' && c != '\\') {
				char esc[8];
				str_printf(reason, rsize,
					   "invalid escape '\\%s' (only \\\" "
					   "and \\\\ are allowed)",
					   cfg_safe(str_from(&s.p[i], 1), esc,
						    sizeof(esc)));
				free(out);
				return -1;
			}
		}
		out[o++] = c;
	}
	free(out);
	str_copy(STR("unterminated quoted string"), reason, rsize);
	return -1;
}

/* A single value: one quoted string, or bare text without quotes. Returns
 * 0 with an allocated *out_r, or -1 with a reason. */
static int cfg_scalar(struct str raw, char **out_r, char *reason, size_t rsize)
{
	size_t used;

	if (raw.len > 0 && raw.p[0] == '"') {
		if (cfg_quoted(raw, &used, out_r, reason, rsize) < 0)
			return -1;
		if (str_trim(str_slice(raw, used, raw.len)).len != 0) {
			free(*out_r);
			*out_r = NULL;
			str_copy(STR("unexpected text after the closing quote"),
				 reason, rsize);
			return -1;
		}
		return 0;
	}
	if (str_index(raw, '"') >= 0) {
		str_copy(STR("unexpected '\"' (quote the whole value)"), reason,
			 rsize);
		return -1;
	}
	*out_r = xstrndup(raw.p == NULL ? "" : raw.p, raw.len);
	return 0;
}

/* Takes the next list item from *rest (items are separated by blanks and
 * commas; an item may be quoted). Returns 1 with an allocated *item_r, 0
 * at the end, -1 with a reason. */
static int cfg_list_next(struct str *rest, char **item_r, char *reason,
			 size_t rsize)
{
	struct str s = *rest;
	size_t i = 0, used;

	while (i < s.len && (cfg_is_blank(s.p[i]) || s.p[i] == ','))
		i++;
	s = str_slice(s, i, s.len);
	if (s.len == 0) {
		*rest = s;
		return 0;
	}
	if (s.p[0] == '"') {
		if (cfg_quoted(s, &used, item_r, reason, rsize) < 0)
			return -1;
		if (used < s.len && !cfg_is_blank(s.p[used]) &&
		    s.p[used] != ',') {
			free(*item_r);
			*item_r = NULL;
			str_copy(STR("unexpected text after the closing quote"),
				 reason, rsize);
			return -1;
		}
	} else {
		used = 0;
		while (used < s.len && !cfg_is_blank(s.p[used]) &&
		       s.p[used] != ',') {
			if (s.p[used] == '"') {
				str_copy(STR("unexpected '\"' inside an item"),
					 reason, rsize);
				return -1;
			}
			used++;
		}
		*item_r = xstrndup(s.p, used);
	}
	*rest = str_slice(s, used, s.len);
	return 1;
}

/* ---- typed values ------------------------------------------------------- */

static void cfg_value_free(enum config_type type, union cfg_value *v)
{
	switch (type) {
	case CONFIG_TYPE_STRING:
		xfree(&v->s);
		break;
	case CONFIG_TYPE_LIST:
		for (size_t i = 0; i < v->l.count; i++)
			free(v->l.items[i]);
		xfree(&v->l.items);
		v->l.count = 0;
		break;
	case CONFIG_TYPE_NETS:
		xfree(&v->n.nets);
		v->n.count = 0;
		break;
	default:
		break;
	}
}

static size_t cfg_value_size(enum config_type type)
{
	switch (type) {
	case CONFIG_TYPE_STRING:
		return sizeof(char *);
	case CONFIG_TYPE_BOOL:
		return sizeof(bool);
	case CONFIG_TYPE_UINT:
	case CONFIG_TYPE_SIZE:
	case CONFIG_TYPE_DURATION:
		return sizeof(uint64_t);
	case CONFIG_TYPE_ENUM:
		return sizeof(unsigned int);
	case CONFIG_TYPE_LIST:
		return sizeof(struct config_strlist);
	case CONFIG_TYPE_NETS:
		return sizeof(struct config_nets);
	default:
		return 0;
	}
}

static void cfg_value_load(enum config_type type, const void *field,
			   union cfg_value *v_r)
{
	memset(v_r, 0, sizeof(*v_r));
	memcpy(v_r, field, cfg_value_size(type));
}

static void cfg_value_store(enum config_type type, const union cfg_value *v,
			    void *field)
{
	memcpy(field, v, cfg_value_size(type));
}

/* Splits "123 unit" into the number and the unit text. */
static int cfg_number_unit(struct str s, uint64_t *num_r, struct str *unit_r,
			   char *reason, size_t rsize)
{
	size_t i = 0;

	while (i < s.len && s.p[i] >= '0' && s.p[i] <= '9')
		i++;
	if (i == 0) {
		str_copy(s.len > 0 && s.p[0] == '-'
			     ? STR("negative values are not allowed")
			     : STR("not a number"),
			 reason, rsize);
		return -1;
	}
	if (!str_to_u64(str_from(s.p, i), UINT64_MAX, num_r)) {
		str_copy(STR("number too large"), reason, rsize);
		return -1;
	}
	if (i < s.len && (s.p[i] == '.' || s.p[i] == ',')) {
		str_copy(STR("fractions are not allowed"), reason, rsize);
		return -1;
	}
	*unit_r = str_trim(str_slice(s, i, s.len));
	return 0;
}

struct cfg_unit {
	const char *name;
	uint64_t mult;
};

static const struct cfg_unit cfg_size_units[] = {
    {"", 1},           {"b", 1},
    {"k", 1ULL << 10}, {"kb", 1ULL << 10},
    {"m", 1ULL << 20}, {"mb", 1ULL << 20},
    {"g", 1ULL << 30}, {"gb", 1ULL << 30},
    {"t", 1ULL << 40}, {"tb", 1ULL << 40},
    {NULL, 0},
};

static const struct cfg_unit cfg_duration_units[] = {
    {"", 1000},           {"ms", 1},
    {"msec", 1},          {"msecs", 1},
    {"s", 1000},          {"sec", 1000},
    {"secs", 1000},       {"second", 1000},
    {"seconds", 1000},    {"m", 60000},
    {"min", 60000},       {"mins", 60000},
    {"minute", 60000},    {"minutes", 60000},
    {"h", 3600000},       {"hour", 3600000},
    {"hours", 3600000},   {"d", 86400000},
    {"day", 86400000},    {"days", 86400000},
    {"w", 604800000},     {"week", 604800000},
    {"weeks", 604800000}, {NULL, 0},
};

static int cfg_parse_units(struct str text, const struct cfg_unit *units,
			   uint64_t *value_r, char *reason, size_t rsize)
{
	struct str unit;
	uint64_t num;
	char safe[32];

	if (cfg_number_unit(text, &num, &unit, reason, rsize) < 0)
		return -1;
	for (const struct cfg_unit *u = units; u->name != NULL; u++) {
		if (!str_eq_nocase(unit, str_cstr(u->name)))
			continue;
		if (num > UINT64_MAX / u->mult) {
			str_copy(STR("value too large"), reason, rsize);
			return -1;
		}
		*value_r = num * u->mult;
		return 0;
	}
	str_printf(reason, rsize, "unknown unit '%s'",
		   cfg_safe(unit, safe, sizeof(safe)));
	return -1;
}

static void cfg_format_units(uint64_t v, const struct cfg_unit *units,
			     const char *const *names, struct buf *out)
{
	/* names: the preferred spelling per multiple, largest first */
	if (v == 0) {
		buf_append_cstr(out, "0");
		return;
	}
	for (size_t i = 0; names[i] != NULL; i++) {
		for (const struct cfg_unit *u = units; u->name != NULL; u++) {
			if (!str_eq_nocase(str_cstr(u->name),
					   str_cstr(names[i])))
				continue;
			if (v % u->mult == 0) {
				buf_printf(out, "%" PRIu64 "%s", v / u->mult,
					   names[i]);
				return;
			}
			break;
		}
	}
	buf_printf(out, "%" PRIu64, v);
}

static const char *const cfg_size_names[] = {"T", "G", "M", "k", NULL};
static const char *const cfg_duration_names[] = {"w", "d",  "h", "m",
						 "s", "ms", NULL};

static void cfg_format_plain(const struct config_def *def, uint64_t v,
			     struct buf *out)
{
	if (def->type == CONFIG_TYPE_SIZE)
		cfg_format_units(v, cfg_size_units, cfg_size_names, out);
	else if (def->type == CONFIG_TYPE_DURATION)
		cfg_format_units(v, cfg_duration_units, cfg_duration_names,
				 out);
	else
		buf_printf(out, "%" PRIu64, v);
}

static int cfg_check_range(const struct config_def *def, uint64_t v,
			   char *reason, size_t rsize)
{
	struct buf *b;

	if (v >= def->min && (def->max == 0 || v <= def->max))
		return 0;
	b = buf_new(32, 128);
	cfg_format_plain(def, v < def->min ? def->min : def->max, b);
	str_printf(reason, rsize, "must be at %s %s",
		   v < def->min ? "least" : "most", buf_cstr(b));
	buf_free(&b);
	return -1;
}

static bool cfg_string_needs_quotes(const char *s, bool item)
{
	size_t len = strlen(s);

	if (len == 0)
		return item;
	if (cfg_is_blank(s[0]) || cfg_is_blank(s[len - 1]))
		return true;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '#' || s[i] == '\\')
			return true;
		if (item && (cfg_is_blank(s[i]) || s[i] == ',' || s[i] == '{' ||
			     s[i] == '}' || s[i] == '='))
			return true;
	}
	return false;
}

/* Writes s in config syntax: bare when that reads back the same, else
 * quoted with \" and \\ escapes. */
static void cfg_format_string(const char *s, bool item, struct buf *out)
{
	if (!cfg_string_needs_quotes(s, item)) {
		buf_append_cstr(out, s);
		return;
	}
	buf_append_byte(out, '"');
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			buf_append_byte(out, '\\');
		buf_append_byte(out, (uint8_t)*s);
	}
	buf_append_byte(out, '"');
}

static void cfg_format_value(const struct config_def *def,
			     const union cfg_value *v, struct buf *out)
{
	char net[NETMASK_STRLEN];

	switch (def->type) {
	case CONFIG_TYPE_STRING:
		cfg_format_string(v->s == NULL ? "" : v->s, false, out);
		break;
	case CONFIG_TYPE_BOOL:
		buf_append_cstr(out, v->b ? "yes" : "no");
		break;
	case CONFIG_TYPE_UINT:
	case CONFIG_TYPE_SIZE:
	case CONFIG_TYPE_DURATION:
		cfg_format_plain(def, v->u, out);
		break;
	case CONFIG_TYPE_ENUM: {
		size_t n = 0;
		while (def->enum_values[n] != NULL)
			n++;
		buf_append_cstr(out, v->e < n ? def->enum_values[v->e] : "?");
		break;
	}
	case CONFIG_TYPE_LIST:
		for (size_t i = 0; i < v->l.count; i++) {
			if (i > 0)
				buf_append_byte(out, ' ');
			cfg_format_string(v->l.items[i], true, out);
		}
		break;
	case CONFIG_TYPE_NETS:
		for (size_t i = 0; i < v->n.count; i++) {
			if (i > 0)
				buf_append_byte(out, ' ');
			buf_append_cstr(out, netmask_format(&v->n.nets[i], net,
							    sizeof(net)));
		}
		break;
	default:
		break;
	}
}

/* Parses raw (config text after '=') for def into *v. Returns 0, or -1
 * with a reason (v then owns nothing). */
static int cfg_value_parse(const struct config_def *def, struct str raw,
			   union cfg_value *v, char *reason, size_t rsize)
{
	static const char *const yes[] = {"yes", "true", "on", "1", NULL};
	static const char *const no[] = {"no", "false", "off", "0", NULL};
	char *text = NULL, *item;
	int ret = -1, r;

	memset(v, 0, sizeof(*v));
	if (def->type == CONFIG_TYPE_LIST || def->type == CONFIG_TYPE_NETS) {
		while ((r = cfg_list_next(&raw, &item, reason, rsize)) > 0) {
			if (def->type == CONFIG_TYPE_LIST) {
				v->l.items = xreallocarray(
				    v->l.items, v->l.count + 1, sizeof(char *));
				v->l.items[v->l.count++] = item;
				continue;
			}
			const char *error;
			struct netmask net;
			if (netmask_parse(item, &net, &error) < 0) {
				char safe[64];
				str_printf(reason, rsize, "'%s': %s",
					   cfg_safe(str_cstr(item), safe,
						    sizeof(safe)),
					   error);
				free(item);
				r = -1;
				break;
			}
			free(item);
			v->n.nets = xreallocarray(v->n.nets, v->n.count + 1,
						  sizeof(*v->n.nets));
			v->n.nets[v->n.count++] = net;
		}
		if (r < 0) {
			cfg_value_free(def->type, v);
			return -1;
		}
		return 0;
	}

	if (cfg_scalar(raw, &text, reason, rsize) < 0)
		return -1;
	struct str t = str_cstr(text);
	switch (def->type) {
	case CONFIG_TYPE_STRING:
		v->s = text;
		return 0;
	case CONFIG_TYPE_BOOL:
		for (size_t i = 0; yes[i] != NULL; i++) {
			if (str_eq_nocase(t, str_cstr(yes[i]))) {
				v->b = true;
				ret = 0;
			} else if (str_eq_nocase(t, str_cstr(no[i]))) {
				v->b = false;
				ret = 0;
			}
		}
		if (ret < 0)
			str_copy(STR("expected yes/no, true/false, on/off "
				     "or 1/0"),
				 reason, rsize);
		break;
	case CONFIG_TYPE_UINT: {
		struct str unit;
		if (cfg_number_unit(t, &v->u, &unit, reason, rsize) < 0)
			break;
		if (unit.len > 0)
			str_copy(STR("not a number"), reason, rsize);
		else
			ret = cfg_check_range(def, v->u, reason, rsize);
		break;
	}
	case CONFIG_TYPE_SIZE:
	case CONFIG_TYPE_DURATION:
		if (cfg_parse_units(t,
				    def->type == CONFIG_TYPE_SIZE
					? cfg_size_units
					: cfg_duration_units,
				    &v->u, reason, rsize) == 0)
			ret = cfg_check_range(def, v->u, reason, rsize);
		break;
	case CONFIG_TYPE_ENUM: {
		struct buf *b = buf_new(64, 1024);
		for (unsigned int i = 0; def->enum_values[i] != NULL; i++) {
			if (str_eq_nocase(t, str_cstr(def->enum_values[i]))) {
				v->e = i;
				ret = 0;
				break;
			}
			buf_printf(b, "%s%s", i > 0 ? ", " : "",
				   def->enum_values[i]);
		}
		if (ret < 0)
			str_printf(reason, rsize, "expected one of: %s",
				   buf_cstr(b));
		buf_free(&b);
		break;
	}
	default:
		str_copy(STR("not a value setting"), reason, rsize);
		break;
	}
	free(text);
	return ret;
}

/* ---- defaults and freeing ---------------------------------------------- */

static void cfg_free_section(const struct config_section *schema, void *set);

static void cfg_free_def(const struct config_def *def, void *set)
{
	void *field = cfg_field(set, def->offset);
	union cfg_value v;

	switch (def->type) {
	case CONFIG_TYPE_BLOCK:
		cfg_free_section(def->section, field);
		break;
	case CONFIG_TYPE_SECTIONS: {
		char **items = field;
		size_t *count = cfg_field(set, def->count_offset);
		for (size_t i = 0; i < *count; i++) {
			void *item = *items + i * def->section->struct_size;
			cfg_free_section(def->section, item);
		}
		xfree(items);
		*count = 0;
		break;
	}
	default:
		cfg_value_load(def->type, field, &v);
		cfg_value_free(def->type, &v);
		cfg_value_store(def->type, &v, field);
		break;
	}
}

static void cfg_free_section(const struct config_section *schema, void *set)
{
	for (const struct config_def *d = schema->defs; d->key != NULL; d++)
		cfg_free_def(d, set);
	if (schema->named) {
		char **name = cfg_field(set, schema->name_offset);
		xfree(name);
	}
}

void config_free(const struct config_section *schema, void *set)
{
	cfg_free_section(schema, set);
	memset(set, 0, schema->struct_size);
}

/* Parses the default of def into *v (an empty value for NULL). */
static int cfg_default_value(const struct config_def *def, union cfg_value *v,
			     char *reason, size_t rsize)
{
	memset(v, 0, sizeof(*v));
	if (def->default_value == NULL) {
		if (def->type == CONFIG_TYPE_STRING)
			v->s = xstrdup("");
		return 0;
	}
	return cfg_value_parse(def, str_cstr(def->default_value), v, reason,
			       rsize);
}

static void cfg_apply_defaults(struct cfg_parser *p,
			       const struct config_section *schema, void *set)
{
	char reason[CFG_REASON_MAX];
	union cfg_value v;

	for (const struct config_def *d = schema->defs; d->key != NULL; d++) {
		void *field = cfg_field(set, d->offset);
		switch (d->type) {
		case CONFIG_TYPE_BLOCK:
			cfg_apply_defaults(p, d->section, field);
			break;
		case CONFIG_TYPE_SECTIONS:
			break; /* no items until the file names some */
		default:
			if (cfg_default_value(d, &v, reason, sizeof(reason)) <
			    0) {
				cfg_error_at(
				    p, "<defaults>", 0,
				    "invalid default '%s' for '%s': %s",
				    d->default_value, d->key, reason);
				cfg_default_value(
				    &(struct config_def){.type = d->type}, &v,
				    reason, sizeof(reason));
			}
			cfg_value_store(d->type, &v, field);
			break;
		}
	}
}

/* ---- frames ---------------------------------------------------------- */

static size_t cfg_def_count(const struct config_section *s)
{
	size_t n = 0;

	while (s->defs[n].key != NULL)
		n++;
	return n;
}

/* Pushes a frame; schema NULL skips the section body. */
static void cfg_push(struct cfg_parser *p, const struct config_section *schema,
		     void *set, const char *title)
{
	if (p->depth >= CONFIG_NEST_MAX + 1) {
		cfg_error(p, "sections nested too deeply (max %d levels)",
			  CONFIG_NEST_MAX);
		p->gave_up = true;
		return;
	}
	struct cfg_frame *f = &p->frames[p->depth++];
	memset(f, 0, sizeof(*f));
	f->schema = schema;
	f->set = set;
	if (schema != NULL)
		f->seen = xcalloc(cfg_def_count(schema) + 1, sizeof(*f->seen));
	f->file = p->cur_file;
	f->line = p->cur_line;
	str_copy(str_cstr(title), f->title, sizeof(f->title));
}

static void cfg_pop(struct cfg_parser *p)
{
	struct cfg_frame *f = &p->frames[--p->depth];

	xfree(&f->seen);
}

/* ---- lines ------------------------------------------------------------- */

static void cfg_set(struct cfg_parser *p, struct str key, struct str raw)
{
	struct cfg_frame *f = &p->frames[p->depth - 1];
	char reason[CFG_REASON_MAX], hint[96], safe[128];
	union cfg_value v, old;

	if (f->schema == NULL)
		return;
	const struct config_def *def = cfg_find_def(f->schema, key);
	if (def == NULL) {
		cfg_error(
		    p, "unknown setting '%.*s'%s", STR_FMT(key),
		    cfg_suggest(f->schema, key, false, hint, sizeof(hint)));
		return;
	}
	if (def->type == CONFIG_TYPE_BLOCK ||
	    def->type == CONFIG_TYPE_SECTIONS) {
		cfg_error(p, "'%s' is a section, not a setting", def->key);
		return;
	}
	struct cfg_seen *seen = &f->seen[def - f->schema->defs];
	if (seen->file != NULL) {
		cfg_error(p, "duplicate setting '%s' (first set at %s:%u)",
			  def->key, seen->file, seen->line);
		return;
	}
	seen->file = p->cur_file;
	seen->line = p->cur_line;
	if (cfg_value_parse(def, raw, &v, reason, sizeof(reason)) < 0) {
		cfg_error(p, "invalid %s '%s' for '%s': %s",
			  cfg_type_names[def->type],
			  cfg_safe(raw, safe, sizeof(safe)), def->key, reason);
		return;
	}
	void *field = cfg_field(f->set, def->offset);
	cfg_value_load(def->type, field, &old);
	cfg_value_free(def->type, &old);
	cfg_value_store(def->type, &v, field);
}

static void cfg_open(struct cfg_parser *p, struct str key, const char *name)
{
	struct cfg_frame *f = &p->frames[p->depth - 1];
	char title[128], hint[96], safe[96];

	if (name == NULL)
		str_printf(title, sizeof(title), "%.*s", STR_FMT(key));
	else
		str_printf(title, sizeof(title), "%.*s %s", STR_FMT(key),
			   cfg_safe(str_cstr(name), safe, sizeof(safe)));
	if (f->schema == NULL) {
		cfg_push(p, NULL, NULL, title);
		return;
	}
	const struct config_def *def = cfg_find_def(f->schema, key);
	if (def == NULL) {
		cfg_error(
		    p, "unknown section '%.*s'%s", STR_FMT(key),
		    cfg_suggest(f->schema, key, true, hint, sizeof(hint)));
		cfg_push(p, NULL, NULL, title);
		return;
	}
	if (def->type == CONFIG_TYPE_BLOCK) {
		struct cfg_seen *seen = &f->seen[def - f->schema->defs];
		if (name != NULL) {
			cfg_error(p, "section '%s' does not take a name",
				  def->key);
		} else if (seen->file != NULL) {
			cfg_error(p, "duplicate section '%s' (first at %s:%u)",
				  def->key, seen->file, seen->line);
		} else {
			seen->file = p->cur_file;
			seen->line = p->cur_line;
			cfg_push(p, def->section,
				 cfg_field(f->set, def->offset), title);
			return;
		}
		cfg_push(p, NULL, NULL, title);
		return;
	}
	if (def->type != CONFIG_TYPE_SECTIONS) {
		cfg_error(p, "'%s' is a setting, not a section", def->key);
		cfg_push(p, NULL, NULL, title);
		return;
	}

	const struct config_section *sub = def->section;
	char **items = cfg_field(f->set, def->offset);
	size_t *count = cfg_field(f->set, def->count_offset);
	if (name == NULL || name[0] == '\0') {
		cfg_error(p, "section '%s' needs a name", def->key);
		cfg_push(p, NULL, NULL, title);
		return;
	}
	for (size_t i = 0; i < *count; i++) {
		char *const *iname =
		    cfg_cfield(*items + i * sub->struct_size, sub->name_offset);
		if (strcmp(*iname, name) == 0) {
			cfg_error(p, "duplicate section '%s'", title);
			cfg_push(p, NULL, NULL, title);
			return;
		}
	}
	if (*count >= CONFIG_SECTIONS_MAX) {
		cfg_error(p, "too many '%s' sections (max %d)", def->key,
			  CONFIG_SECTIONS_MAX);
		cfg_push(p, NULL, NULL, title);
		return;
	}
	*items = xreallocarray(*items, *count + 1, sub->struct_size);
	void *item = *items + *count * sub->struct_size;
	(*count)++;
	memset(item, 0, sub->struct_size);
	cfg_apply_defaults(p, sub, item);
	*(char **)cfg_field(item, sub->name_offset) = xstrdup(name);
	cfg_push(p, sub, item, title);
}

static void cfg_close(struct cfg_parser *p)
{
	if (p->depth <= p->file_base) {
		cfg_error(p, "unexpected '}' (no section is open)");
		return;
	}
	cfg_pop(p);
}

static void cfg_parse_file(struct cfg_parser *p, const char *path,
			   bool missing_ok);

static bool cfg_has_glob(const char *s)
{
	return strpbrk(s, "*?[") != NULL;
}

static int cfg_strcmp_p(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void cfg_include(struct cfg_parser *p, struct str arg, bool try)
{
	char reason[CFG_REASON_MAX], *path;
	const char *directive = try ? "!include_try" : "!include";

	if (p->frames[p->depth - 1].schema == NULL)
		return;
	if ((p->flags & CONFIG_LOAD_NO_INCLUDE) != 0) {
		cfg_error(p, "%s is not allowed here", directive);
		return;
	}
	if (cfg_scalar(arg, &path, reason, sizeof(reason)) < 0) {
		cfg_error(p, "%s: %s", directive, reason);
		return;
	}
	if (path[0] == '\0') {
		cfg_error(p, "%s needs a path", directive);
		free(path);
		return;
	}

	/* relative to the directory of the including file */
	struct buf *full = buf_new(256, CONFIG_LINE_MAX * 2);
	const char *slash =
	    p->cur_file == NULL ? NULL : strrchr(p->cur_file, '/');
	if (path[0] != '/' && slash != NULL)
		buf_append(full, p->cur_file,
			   (size_t)(slash - p->cur_file) + 1);
	buf_append_cstr(full, path);
	free(path);

	if (!cfg_has_glob(buf_cstr(full))) {
		cfg_parse_file(p, buf_cstr(full), try);
		buf_free(&full);
		return;
	}

	glob_t g;
	memset(&g, 0, sizeof(g));
	int ret = glob(buf_cstr(full), GLOB_NOSORT, NULL, &g);
	if (ret == GLOB_NOMATCH) {
		if (!try)
			cfg_error(p, "!include '%s': no matching files",
				  buf_cstr(full));
	} else if (ret != 0) {
		cfg_error(p, "!include '%s': %s", buf_cstr(full),
			  ret == GLOB_NOSPACE ? "out of memory" : "read error");
	} else {
		qsort(g.gl_pathv, g.gl_pathc, sizeof(*g.gl_pathv),
		      cfg_strcmp_p);
		for (size_t i = 0; i < g.gl_pathc && !p->gave_up; i++)
			cfg_parse_file(p, g.gl_pathv[i], try);
	}
	globfree(&g);
	buf_free(&full);
}

/* Parses a section name after the type word: "name" or bare. Returns 0
 * with *name_r allocated and *rest_r the text after it, or -1. */
static int cfg_section_name(struct cfg_parser *p, struct str s, char **name_r,
			    struct str *rest_r)
{
	char reason[CFG_REASON_MAX];
	size_t used = 0;

	if (s.p[0] == '"') {
		if (cfg_quoted(s, &used, name_r, reason, sizeof(reason)) < 0) {
			cfg_error(p, "%s", reason);
			return -1;
		}
	} else {
		while (used < s.len && !cfg_is_blank(s.p[used]) &&
		       s.p[used] != '{' && s.p[used] != '"' && s.p[used] != '=')
			used++;
		*name_r = xstrndup(s.p, used);
	}
	*rest_r = str_trim(str_slice(s, used, s.len));
	return 0;
}

static void cfg_parse_line(struct cfg_parser *p, struct str line)
{
	size_t end = line.len, i;
	bool in_quote = false;
	char safe[64];

	/* cut the comment and check the quotes */
	for (i = 0; i < line.len; i++) {
		char c = line.p[i];
		if (in_quote) {
			if (c == '\\' && i + 1 < line.len)
				i++;
			else if (c == '"')
				in_quote = false;
		} else if (c == '"') {
			in_quote = true;
		} else if (c == '#') {
			end = i;
			break;
		}
	}
	if (in_quote) {
		cfg_error(p, "unterminated quoted string");
		return;
	}
	line = str_trim(str_from(line.p, end));
	if (line.len == 0)
		return;

	if (line.p[0] == '}') {
		if (line.len > 1)
			cfg_error(p, "unexpected text after '}'");
		cfg_close(p);
		return;
	}

	if (line.p[0] == '!') {
		for (i = 1; i < line.len && !cfg_is_blank(line.p[i]); i++)
			;
		struct str word = str_from(line.p, i);
		struct str arg = str_trim(str_slice(line, i, line.len));
		if (str_eq(word, STR("!include")))
			cfg_include(p, arg, false);
		else if (str_eq(word, STR("!include_try")))
			cfg_include(p, arg, true);
		else
			cfg_error(p, "unknown directive '%s'",
				  cfg_safe(word, safe, sizeof(safe)));
		return;
	}

	for (i = 0; i < line.len && cfg_is_key_char(line.p[i]); i++)
		;
	struct str key = str_from(line.p, i);
	struct str rest = str_trim(str_slice(line, i, line.len));
	if (key.len == 0) {
		cfg_error(p,
			  "syntax error at '%s': expected 'key = value', "
			  "'section [name] {' or '}'",
			  cfg_safe(line, safe, sizeof(safe)));
		return;
	}
	if (key.len > 64) {
		cfg_error(p, "name too long: '%s'",
			  cfg_safe(key, safe, sizeof(safe)));
		return;
	}
	if (rest.len > 0 && rest.p[0] == '=') {
		cfg_set(p, key, str_trim(str_slice(rest, 1, rest.len)));
		return;
	}

	char *name = NULL;
	if (rest.len > 0 && rest.p[0] != '{') {
		if (cfg_section_name(p, rest, &name, &rest) < 0)
			return;
	}
	if (rest.len == 0 || rest.p[0] != '{') {
		cfg_error(p, "expected '=' or '{' after '%.*s'", STR_FMT(key));
		free(name);
		return;
	}
	if (rest.len > 1) {
		cfg_error(p, "unexpected text after '{' (put settings on "
			     "their own lines)");
		free(name);
		return;
	}
	cfg_open(p, key, name);
	free(name);
}

/* Parses one file's bytes in the current frame. */
static void cfg_parse_buffer(struct cfg_parser *p, const char *name,
			     const char *data, size_t size)
{
	const char *saved_file = p->cur_file;
	unsigned int saved_line = p->cur_line, saved_base = p->file_base;
	size_t pos = 0;

	p->cur_file = name;
	p->cur_line = 0;
	p->file_base = p->depth;
	while (pos < size && !p->gave_up) {
		const char *nl = memchr(data + pos, '\n', size - pos);
		size_t len =
		    nl == NULL ? size - pos : (size_t)(nl - data) - pos;
		struct str line = str_from(data + pos, len);

		pos += len + (nl != NULL ? 1 : 0);
		p->cur_line++;
		if (line.len > 0 && line.p[line.len - 1] == '\r')
			line.len--;
		if (line.len > CONFIG_LINE_MAX) {
			cfg_error(p, "line too long (max %d bytes)",
				  CONFIG_LINE_MAX);
			continue;
		}
		bool bad = false;
		for (size_t i = 0; i < line.len && !bad; i++) {
			unsigned char c = (unsigned char)line.p[i];
			bad = (c < 0x20 && c != '\t') || c == 0x7f;
		}
		if (bad) {
			cfg_error(p, "control character in line");
			continue;
		}
		cfg_parse_line(p, line);
	}
	while (p->depth > p->file_base && !p->gave_up) {
		struct cfg_frame *f = &p->frames[p->depth - 1];
		cfg_error_at(p, f->file, f->line,
			     "missing '}' for section '%s'", f->title);
		cfg_pop(p);
	}
	p->cur_file = saved_file;
	p->cur_line = saved_line;
	p->file_base = saved_base;
}

static const char *cfg_keep_name(struct cfg_parser *p, const char *name)
{
	p->names =
	    xreallocarray(p->names, p->names_count + 1, sizeof(*p->names));
	p->names[p->names_count] = xstrdup(name);
	return p->names[p->names_count++];
}

/* Reports a problem with a file: at the !include line, or "path: msg" for
 * the top file. */
static void cfg_file_error(struct cfg_parser *p, const char *path,
			   const char *msg)
{
	if (p->cur_file == NULL)
		cfg_error_at(p, path, 0, "%s", msg);
	else
		cfg_error(p, "cannot include '%s': %s", path, msg);
}

static void cfg_parse_file(struct cfg_parser *p, const char *path,
			   bool missing_ok)
{
	char msg[128];
	struct stat st;
	char *data = NULL;
	size_t len = 0;

	if (p->file_depth >= CONFIG_INCLUDE_DEPTH_MAX + 1) {
		str_printf(msg, sizeof(msg),
			   "includes nested too deeply "
			   "(max %d levels)",
			   CONFIG_INCLUDE_DEPTH_MAX);
		cfg_file_error(p, path, msg);
		return;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd == -1) {
		if (errno == ENOENT && missing_ok)
			return;
		cfg_file_error(p, path, strerror(errno));
		return;
	}
	if (fstat(fd, &st) == -1) {
		cfg_file_error(p, path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		cfg_file_error(p, path, "not a regular file");
		goto out;
	}
	for (unsigned int i = 0; i < p->file_depth; i++) {
		if (p->files[i].dev == st.st_dev &&
		    p->files[i].ino == st.st_ino) {
			cfg_file_error(p, path,
				       "include loop (the file is "
				       "already being read)");
			goto out;
		}
	}
	if (st.st_size > CONFIG_FILE_MAX) {
		str_printf(msg, sizeof(msg), "file too large (max %d bytes)",
			   CONFIG_FILE_MAX);
		cfg_file_error(p, path, msg);
		goto out;
	}
	data = xmalloc((size_t)st.st_size + 1);
	for (;;) {
		/* the file may grow while we read it: stop past the limit */
		if (len >= (size_t)st.st_size + 1)
			break;
		ssize_t ret =
		    read(fd, data + len, (size_t)st.st_size + 1 - len);
		if (ret == -1 && errno == EINTR)
			continue;
		if (ret == -1) {
			cfg_file_error(p, path, strerror(errno));
			goto out;
		}
		if (ret == 0)
			break;
		len += (size_t)ret;
	}
	if (len > (size_t)st.st_size) {
		cfg_file_error(p, path, "file changed while reading");
		goto out;
	}
	if (len > CONFIG_TOTAL_MAX - p->total_bytes) {
		str_printf(msg, sizeof(msg),
			   "configuration too large "
			   "(max %d bytes with includes)",
			   CONFIG_TOTAL_MAX);
		cfg_file_error(p, path, msg);
		goto out;
	}
	p->total_bytes += len;
	p->files[p->file_depth].dev = st.st_dev;
	p->files[p->file_depth].ino = st.st_ino;
	p->file_depth++;
	cfg_parse_buffer(p, cfg_keep_name(p, path), data, len);
	p->file_depth--;
out:
	free(data);
	close(fd);
}

/* ---- loading ------------------------------------------------------------ */

static int cfg_load(const struct config_section *schema, const char *path,
		    const char *name, const void *data, size_t size,
		    unsigned int flags, void *set,
		    struct config_errors *errors_r)
{
	struct cfg_parser *p = xcalloc(1, sizeof(*p));

	memset(errors_r, 0, sizeof(*errors_r));
	memset(set, 0, schema->struct_size);
	p->errors = errors_r;
	p->flags = flags;
	cfg_apply_defaults(p, schema, set);
	if (errors_r->count == 0 && (path != NULL || name != NULL)) {
		cfg_push(p, schema, set, "");
		if (path != NULL) {
			cfg_parse_file(p, path, false);
		} else {
			if (size > CONFIG_FILE_MAX)
				cfg_error_at(p, name, 0,
					     "file too large (max %d bytes)",
					     CONFIG_FILE_MAX);
			else
				cfg_parse_buffer(p, cfg_keep_name(p, name),
						 data, size);
		}
		while (p->depth > 0)
			cfg_pop(p);
	}
	for (size_t i = 0; i < p->names_count; i++)
		free(p->names[i]);
	free(p->names);
	free(p);
	if (errors_r->count > 0) {
		config_free(schema, set);
		return -1;
	}
	return 0;
}

int config_load_file(const struct config_section *schema, const char *path,
		     void *set, struct config_errors *errors_r)
{
	return cfg_load(schema, path, NULL, NULL, 0, 0, set, errors_r);
}

int config_load_buffer(const struct config_section *schema, const char *name,
		       const void *data, size_t size, unsigned int flags,
		       void *set, struct config_errors *errors_r)
{
	return cfg_load(schema, NULL, name == NULL ? "<buffer>" : name, data,
			size, flags, set, errors_r);
}

int config_load_defaults(const struct config_section *schema, void *set,
			 struct config_errors *errors_r)
{
	return cfg_load(schema, NULL, NULL, NULL, 0, 0, set, errors_r);
}

/* ---- printing -------------------------------------------------------- */

static bool cfg_is_default(const struct config_def *def, const void *field)
{
	char reason[CFG_REASON_MAX];
	union cfg_value cur, dflt;
	bool same;

	if (cfg_default_value(def, &dflt, reason, sizeof(reason)) < 0)
		return false;
	cfg_value_load(def->type, field, &cur);
	struct buf *a = buf_new(64, CFG_PRINT_MAX);
	struct buf *b = buf_new(64, CFG_PRINT_MAX);
	cfg_format_value(def, &cur, a);
	cfg_format_value(def, &dflt, b);
	same = str_eq(buf_str(a), buf_str(b));
	buf_free(&a);
	buf_free(&b);
	cfg_value_free(def->type, &dflt);
	return same;
}

static void cfg_indent(struct buf *out, unsigned int level)
{
	for (unsigned int i = 0; i < level; i++)
		buf_append_cstr(out, "  ");
}

static void cfg_print_section(const struct config_section *schema,
			      const void *set, unsigned int level, bool all,
			      struct buf *out)
{
	union cfg_value v;

	for (const struct config_def *d = schema->defs; d->key != NULL; d++) {
		const void *field = cfg_cfield(set, d->offset);
		if (d->type == CONFIG_TYPE_BLOCK) {
			struct buf *sub = buf_new(256, CFG_PRINT_MAX);
			cfg_print_section(d->section, field, level + 1, all,
					  sub);
			if (all || sub->len > 0) {
				cfg_indent(out, level);
				buf_printf(out, "%s {\n", d->key);
				buf_append_str(out, buf_str(sub));
				cfg_indent(out, level);
				buf_append_cstr(out, "}\n");
			}
			buf_free(&sub);
			continue;
		}
		if (d->type == CONFIG_TYPE_SECTIONS) {
			const char *const *items = field;
			const size_t *count = cfg_cfield(set, d->count_offset);
			for (size_t i = 0; i < *count; i++) {
				const char *item =
				    *items + i * d->section->struct_size;
				const char *const *name =
				    cfg_cfield(item, d->section->name_offset);
				cfg_indent(out, level);
				buf_printf(out, "%s ", d->key);
				cfg_format_string(*name, true, out);
				buf_append_cstr(out, " {\n");
				cfg_print_section(d->section, item, level + 1,
						  all, out);
				cfg_indent(out, level);
				buf_append_cstr(out, "}\n");
			}
			continue;
		}
		if (!all && cfg_is_default(d, field))
			continue;
		cfg_value_load(d->type, field, &v);
		cfg_indent(out, level);
		buf_printf(out, "%s =", d->key);
		size_t before = out->len;
		buf_append_byte(out, ' ');
		cfg_format_value(d, &v, out);
		if (out->len == before + 1)
			out->len = before; /* empty value: "key =" */
		buf_append_byte(out, '\n');
	}
}

static void cfg_print(const struct config_section *schema, const void *set,
		      bool all, FILE *out)
{
	struct buf *b = buf_new(1024, CFG_PRINT_MAX);

	cfg_print_section(schema, set, 0, all, b);
	if (b->len > 0)
		fwrite(b->data, 1, b->len, out);
	buf_free(&b);
}

void config_print_nondefault(const struct config_section *schema,
			     const void *set, FILE *out)
{
	cfg_print(schema, set, false, out);
}

void config_print_all(const struct config_section *schema, const void *set,
		      FILE *out)
{
	cfg_print(schema, set, true, out);
}

bool config_nets_match(const struct config_nets *nets,
		       const struct sockaddr *sa)
{
	for (size_t i = 0; i < nets->count; i++) {
		if (netmask_match(&nets->nets[i], sa))
			return true;
	}
	return false;
}

/* ---- command line ------------------------------------------------------ */

bool config_cli_option(struct config_cli *cli, int c, const char *arg)
{
	switch (c) {
	case 'c':
		cli->path = arg;
		return true;
	case 't':
		cli->test = true;
		return true;
	case 'n':
		cli->print_nondefault = true;
		return true;
	case 'a':
		cli->print_all = true;
		return true;
	default:
		return false;
	}
}

int config_cli_run(const struct config_cli *cli,
		   const struct config_section *schema, void *set, FILE *out,
		   FILE *err)
{
	struct config_errors errors;

	if (cli->path == NULL) {
		fprintf(err, "no configuration file given (use -c FILE)\n");
		return -1;
	}
	if (config_load_file(schema, cli->path, set, &errors) < 0) {
		for (size_t i = 0; i < errors.count; i++)
			fprintf(err, "%s\n", errors.lines[i]);
		config_errors_free(&errors);
		return -1;
	}
	config_errors_free(&errors);
	if (cli->print_all)
		config_print_all(schema, set, out);
	else if (cli->print_nondefault)
		config_print_nondefault(schema, set, out);
	if (cli->test || cli->print_all || cli->print_nondefault) {
		fflush(out);
		config_free(schema, set);
		return 0;
	}
	return 1;
}
