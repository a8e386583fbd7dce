#include "imap_search.h"

#include <stdio.h>
#include <stdlib.h>

#include "imap_seqset.h"
#include "xmalloc.h"

/* A program is a tree of nodes kept in one array; children are linked by
 * index (first child, next sibling) so the array can grow while parsing.
 * The root is an AND over the top-level keys. */

enum node_type {
	NODE_ALL = 0, /* ALL */
	NODE_AND,     /* (...) and the top level */
	NODE_OR,      /* OR a b */
	NODE_NOT,     /* NOT a */
	NODE_SEQSET,  /* <sequence-set> */
	NODE_UIDSET,  /* UID <sequence-set> */
	NODE_FLAG,    /* ANSWERED DELETED DRAFT FLAGGED SEEN (+ UN...) */
	NODE_RECENT,  /* RECENT; OLD is its negation */
	NODE_NEW,     /* NEW: recent and not seen */
	NODE_KEYWORD, /* KEYWORD, UNKEYWORD (negated) */
	NODE_LARGER,  /* size > num */
	NODE_SMALLER, /* size < num */
	NODE_BEFORE,  /* internal date before day */
	NODE_ON,
	NODE_SINCE,
	NODE_SENTBEFORE, /* Date: header */
	NODE_SENTON,
	NODE_SENTSINCE,
	NODE_HEADER, /* FROM TO CC BCC SUBJECT HEADER: field + pat */
	NODE_BODY,   /* BODY pat */
	NODE_TEXT,   /* TEXT pat */
	NODE_MODSEQ, /* modseq >= num */
};

/* Evaluation cost classes, cheapest first. */
enum node_cost {
	COST_INDEX = 0, /* answered from struct imap_search_message */
	COST_KEYWORD,   /* one has_keyword call */
	COST_DATE,      /* parses the Date: header */
	COST_HEADER,    /* scans headers */
	COST_BODY,      /* scans the body */
	COST_TEXT,      /* scans everything */
};

#define NO_NODE UINT32_MAX

struct node {
	enum node_type type;
	bool negate;    /* leaves: invert the answer (UNSEEN, OLD...) */
	uint8_t cost;   /* enum node_cost, the subtree's maximum */
	uint32_t first; /* AND, OR, NOT: first child */
	uint32_t next;  /* next sibling */
	uint32_t flag;  /* FLAG: IMAP_SEARCH_FLAG_* */
	uint64_t num;   /* LARGER SMALLER MODSEQ */
	int64_t day;    /* dates: days since 1970-01-01 */
	struct imap_seqset *seqset; /* SEQSET UIDSET */
	char *name;                 /* KEYWORD: name; HEADER: field */
	size_t name_len;
	struct textmatch_pattern *pat; /* HEADER BODY TEXT */
};

struct imap_search {
	struct node *nodes;
	size_t count, cap;
	uint32_t root;
	unsigned int needs;
	bool uses_modseq;
	uint64_t max_modseq;
};

struct parse_ctx {
	struct imap_search *prog;
	unsigned int max_depth, max_keys;
	bool allow_modseq;
	const char *error;
	enum imap_search_parse_result result;
};

/* Errors naming a client argument are formatted here: valid until the next
 * imap_search_parse call on this thread. Static texts need no buffer. */
static _Thread_local char error_buf[160];

static void set_error(struct parse_ctx *ctx, const char *msg)
{
	if (ctx->error == NULL)
		ctx->error = msg;
}

static void set_error_arg(struct parse_ctx *ctx, const char *prefix,
			  struct str arg)
{
	char clean[64];

	if (ctx->error != NULL)
		return;
	str_sanitize(arg, clean, sizeof(clean));
	if (str_printf(error_buf, sizeof(error_buf), "%s %s", prefix, clean) <
	    0)
		ctx->error = prefix;
	else
		ctx->error = error_buf;
}

/* Appends a node; returns its index, or NO_NODE past max_keys. */
static uint32_t node_new(struct parse_ctx *ctx, enum node_type type,
			 uint8_t cost)
{
	struct imap_search *prog = ctx->prog;

	if (prog->count >= ctx->max_keys) {
		set_error(ctx, "Too many search keys");
		return NO_NODE;
	}
	if (prog->count == prog->cap) {
		prog->cap = prog->cap == 0 ? 16 : prog->cap * 2;
		prog->nodes =
		    xreallocarray(prog->nodes, prog->cap, sizeof(*prog->nodes));
	}
	uint32_t idx = (uint32_t)prog->count++;
	prog->nodes[idx] = (struct node){
	    .type = type, .cost = cost, .first = NO_NODE, .next = NO_NODE};
	return idx;
}

static struct node *node_at(struct parse_ctx *ctx, uint32_t idx)
{
	return &ctx->prog->nodes[idx];
}

/* Orders the children of idx by cost (stable insertion sort on the linked
 * list; at most max_keys children) and sets idx's cost to their maximum. */
static void sort_children(struct imap_search *prog, uint32_t idx)
{
	uint32_t sorted = NO_NODE;
	uint32_t c = prog->nodes[idx].first;
	uint8_t max_cost = COST_INDEX;

	while (c != NO_NODE) {
		uint32_t next = prog->nodes[c].next;
		uint8_t cost = prog->nodes[c].cost;
		if (cost > max_cost)
			max_cost = cost;
		/* insert after every node of cost <= this one */
		uint32_t *link = &sorted;
		while (*link != NO_NODE && prog->nodes[*link].cost <= cost)
			link = &prog->nodes[*link].next;
		prog->nodes[c].next = *link;
		*link = c;
		c = next;
	}
	prog->nodes[idx].first = sorted;
	prog->nodes[idx].cost = max_cost;
}

static uint32_t parse_key(struct parse_ctx *ctx, const struct imap_arg *args,
			  size_t count, size_t *pos, unsigned int depth);

/* Parses keys args[*pos..count) as the children of a new AND node. */
static uint32_t parse_and(struct parse_ctx *ctx, const struct imap_arg *args,
			  size_t count, unsigned int depth)
{
	uint32_t and = node_new(ctx, NODE_AND, COST_INDEX);
	uint32_t last = NO_NODE;
	size_t pos = 0;

	if (and == NO_NODE)
		return NO_NODE;
	while (pos < count) {
		uint32_t child = parse_key(ctx, args, count, &pos, depth);
		if (child == NO_NODE)
			return NO_NODE;
		if (last == NO_NODE)
			node_at(ctx, and)->first = child;
		else
			node_at(ctx, last)->next = child;
		last = child;
	}
	sort_children(ctx->prog, and);
	return and;
}

static bool next_arg(struct parse_ctx *ctx, const struct imap_arg *args,
		     size_t count, size_t *pos, const struct imap_arg **arg_r)
{
	if (*pos >= count) {
		set_error(ctx, "Missing argument");
		return false;
	}
	*arg_r = &args[(*pos)++];
	return true;
}

static bool next_astring(struct parse_ctx *ctx, const struct imap_arg *args,
			 size_t count, size_t *pos, struct str *value_r)
{
	const struct imap_arg *arg;

	if (!next_arg(ctx, args, count, pos, &arg))
		return false;
	if (!imap_arg_get_astring(arg, value_r)) {
		set_error(ctx, arg->type == IMAP_ARG_LIST
				   ? "Invalid string argument (list)"
				   : "Invalid string argument (contains NUL)");
		return false;
	}
	return true;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; Howard Hinnant's
 * days_from_civil), exact for any year here. */
static int64_t days_from_civil(int64_t y, unsigned int m, unsigned int d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const int64_t yoe = y - era * 400;
	const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* RFC 3501 date-text: 1*2DIGIT "-" Mon "-" 4DIGIT. */
static bool parse_date(struct str s, int64_t *day_r)
{
	static const char months[12][4] = {"jan", "feb", "mar", "apr",
					   "may", "jun", "jul", "aug",
					   "sep", "oct", "nov", "dec"};
	static const unsigned int mdays[12] = {31, 29, 31, 30, 31, 30,
					       31, 31, 30, 31, 30, 31};
	size_t i = 0;
	unsigned int day = 0, month = 0, year = 0;

	while (i < s.len && i < 2 && s.p[i] >= '0' && s.p[i] <= '9')
		day = day * 10 + (unsigned int)(s.p[i++] - '0');
	if (i == 0 || s.len != i + 1 + 3 + 1 + 4 || s.p[i] != '-' ||
	    s.p[i + 4] != '-')
		return false;
	struct str mon = str_from(s.p + i + 1, 3);
	for (month = 0; month < 12; month++) {
		if (str_eq_nocase(mon, str_from(months[month], 3)))
			break;
	}
	if (month == 12)
		return false;
	for (size_t k = i + 5; k < s.len; k++) {
		if (s.p[k] < '0' || s.p[k] > '9')
			return false;
		year = year * 10 + (unsigned int)(s.p[k] - '0');
	}
	bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
	if (day == 0 || day > mdays[month] ||
	    (month == 1 && day == 29 && !leap))
		return false;
	*day_r = days_from_civil(year, month + 1, day);
	return true;
}

/* flag-keyword = atom: no CTL, SP, 8-bit or atom-specials. */
static bool keyword_valid(struct str s)
{
	if (s.len == 0)
		return false;
	for (size_t i = 0; i < s.len; i++) {
		unsigned char c = (unsigned char)s.p[i];
		if (c <= 0x20 || c >= 0x7f || c == '(' || c == ')' ||
		    c == '{' || c == '%' || c == '*' || c == '"' || c == '\\' ||
		    c == ']')
			return false;
	}
	return true;
}

/* RFC 5322 field-name: printable ASCII except ':'. */
static bool field_name_valid(struct str s)
{
	if (s.len == 0)
		return false;
	for (size_t i = 0; i < s.len; i++) {
		unsigned char c = (unsigned char)s.p[i];
		if (c <= 0x20 || c >= 0x7f || c == ':')
			return false;
	}
	return true;
}

static char *copy_str(struct str s)
{
	char *p = xmalloc(s.len + 1);
	if (s.len > 0)
		memcpy(p, s.p, s.len);
	p[s.len] = '\0';
	return p;
}

static bool set_pattern(struct parse_ctx *ctx, uint32_t idx, struct str s)
{
	const char *error;

	if (textmatch_pattern_new(s, &node_at(ctx, idx)->pat, &error) < 0) {
		set_error(ctx, error);
		return false;
	}
	return true;
}

/* KEYWORD/UNKEYWORD name: system flags become flag keys, so
 * "KEYWORD \Seen" means SEEN, as clients sometimes send it. */
static uint32_t parse_keyword(struct parse_ctx *ctx, struct str name,
			      bool negate)
{
	static const struct {
		const char *name;
		uint32_t flag;
	} sys[] = {
	    {"\\Seen", IMAP_SEARCH_FLAG_SEEN},
	    {"\\Answered", IMAP_SEARCH_FLAG_ANSWERED},
	    {"\\Flagged", IMAP_SEARCH_FLAG_FLAGGED},
	    {"\\Deleted", IMAP_SEARCH_FLAG_DELETED},
	    {"\\Draft", IMAP_SEARCH_FLAG_DRAFT},
	};
	uint32_t idx;

	for (size_t i = 0; i < sizeof(sys) / sizeof(sys[0]); i++) {
		if (str_eq_nocase(name, str_cstr(sys[i].name))) {
			idx = node_new(ctx, NODE_FLAG, COST_INDEX);
			if (idx != NO_NODE) {
				node_at(ctx, idx)->flag = sys[i].flag;
				node_at(ctx, idx)->negate = negate;
			}
			return idx;
		}
	}
	if (str_eq_nocase(name, STR("\\Recent"))) {
		idx = node_new(ctx, NODE_RECENT, COST_INDEX);
		if (idx != NO_NODE)
			node_at(ctx, idx)->negate = negate;
		return idx;
	}
	if (!keyword_valid(name)) {
		set_error_arg(ctx, "Invalid keyword", name);
		return NO_NODE;
	}
	idx = node_new(ctx, NODE_KEYWORD, COST_KEYWORD);
	if (idx == NO_NODE)
		return NO_NODE;
	ctx->prog->needs |= IMAP_SEARCH_NEEDS_KEYWORDS;
	node_at(ctx, idx)->negate = negate;
	node_at(ctx, idx)->name = copy_str(name);
	node_at(ctx, idx)->name_len = name.len;
	return idx;
}

/* MODSEQ [entry-name entry-type-req] mod-sequence-valzer (RFC 7162). The
 * entry only narrows which flag's mod-sequence counts; with one
 * mod-sequence per message (allowed by RFC 7162 section 3.1.5), the
 * message's is used for every entry. */
static uint32_t parse_modseq(struct parse_ctx *ctx, const struct imap_arg *args,
			     size_t count, size_t *pos)
{
	const struct imap_arg *arg;
	uint64_t value;

	if (!ctx->allow_modseq) {
		set_error(ctx, "Unknown argument MODSEQ");
		return NO_NODE;
	}
	if (!next_arg(ctx, args, count, pos, &arg))
		return NO_NODE;
	if (arg->type != IMAP_ARG_ATOM ||
	    !str_to_u64(arg->str, INT64_MAX, &value)) {
		struct str entry, type;
		/* entry-flag-name = DQUOTE "/flags/" attr-flag DQUOTE */
		if (arg->type == IMAP_ARG_LIST ||
		    !imap_arg_get_astring(arg, &entry) ||
		    !str_has_prefix_nocase(entry, STR("/flags/")) ||
		    entry.len == 7) {
			set_error(ctx, "Invalid MODSEQ entry");
			return NO_NODE;
		}
		if (!next_arg(ctx, args, count, pos, &arg))
			return NO_NODE;
		type = arg->str;
		if (arg->type != IMAP_ARG_ATOM ||
		    (!str_eq_nocase(type, STR("priv")) &&
		     !str_eq_nocase(type, STR("shared")) &&
		     !str_eq_nocase(type, STR("all")))) {
			set_error(ctx, "Invalid MODSEQ entry type");
			return NO_NODE;
		}
		if (!next_arg(ctx, args, count, pos, &arg))
			return NO_NODE;
		if (arg->type != IMAP_ARG_ATOM ||
		    !str_to_u64(arg->str, INT64_MAX, &value)) {
			set_error(ctx, "Invalid MODSEQ value");
			return NO_NODE;
		}
	}
	uint32_t idx = node_new(ctx, NODE_MODSEQ, COST_INDEX);
	if (idx == NO_NODE)
		return NO_NODE;
	node_at(ctx, idx)->num = value;
	ctx->prog->uses_modseq = true;
	if (value > ctx->prog->max_modseq)
		ctx->prog->max_modseq = value;
	return idx;
}

/* Keys without arguments that test index data. */
static const struct {
	const char *name;
	enum node_type type;
	uint32_t flag;
	bool negate;
} simple_keys[] = {
    {"ALL", NODE_ALL, 0, false},
    {"ANSWERED", NODE_FLAG, IMAP_SEARCH_FLAG_ANSWERED, false},
    {"DELETED", NODE_FLAG, IMAP_SEARCH_FLAG_DELETED, false},
    {"DRAFT", NODE_FLAG, IMAP_SEARCH_FLAG_DRAFT, false},
    {"FLAGGED", NODE_FLAG, IMAP_SEARCH_FLAG_FLAGGED, false},
    {"SEEN", NODE_FLAG, IMAP_SEARCH_FLAG_SEEN, false},
    {"UNANSWERED", NODE_FLAG, IMAP_SEARCH_FLAG_ANSWERED, true},
    {"UNDELETED", NODE_FLAG, IMAP_SEARCH_FLAG_DELETED, true},
    {"UNDRAFT", NODE_FLAG, IMAP_SEARCH_FLAG_DRAFT, true},
    {"UNFLAGGED", NODE_FLAG, IMAP_SEARCH_FLAG_FLAGGED, true},
    {"UNSEEN", NODE_FLAG, IMAP_SEARCH_FLAG_SEEN, true},
    {"RECENT", NODE_RECENT, 0, false},
    {"OLD", NODE_RECENT, 0, true},
    {"NEW", NODE_NEW, 0, false},
};

/* Keys taking a date, a number or a string. */
static const struct {
	const char *name;
	enum node_type type;
	const char *field; /* HEADER shortcuts */
} arg_keys[] = {
    {"BEFORE", NODE_BEFORE, NULL},       {"ON", NODE_ON, NULL},
    {"SINCE", NODE_SINCE, NULL},         {"SENTBEFORE", NODE_SENTBEFORE, NULL},
    {"SENTON", NODE_SENTON, NULL},       {"SENTSINCE", NODE_SENTSINCE, NULL},
    {"LARGER", NODE_LARGER, NULL},       {"SMALLER", NODE_SMALLER, NULL},
    {"FROM", NODE_HEADER, "From"},       {"TO", NODE_HEADER, "To"},
    {"CC", NODE_HEADER, "Cc"},           {"BCC", NODE_HEADER, "Bcc"},
    {"SUBJECT", NODE_HEADER, "Subject"}, {"BODY", NODE_BODY, NULL},
    {"TEXT", NODE_TEXT, NULL},
};

static uint8_t type_cost(enum node_type type)
{
	switch (type) {
	case NODE_KEYWORD:
		return COST_KEYWORD;
	case NODE_SENTBEFORE:
	case NODE_SENTON:
	case NODE_SENTSINCE:
		return COST_DATE;
	case NODE_HEADER:
		return COST_HEADER;
	case NODE_BODY:
		return COST_BODY;
	case NODE_TEXT:
		return COST_TEXT;
	default:
		return COST_INDEX;
	}
}

static uint32_t parse_arg_key(struct parse_ctx *ctx, enum node_type type,
			      const char *field, const struct imap_arg *args,
			      size_t count, size_t *pos)
{
	struct str value;
	uint32_t idx;

	if (!next_astring(ctx, args, count, pos, &value))
		return NO_NODE;
	idx = node_new(ctx, type, type_cost(type));
	if (idx == NO_NODE)
		return NO_NODE;
	switch (type) {
	case NODE_BEFORE:
	case NODE_ON:
	case NODE_SINCE:
	case NODE_SENTBEFORE:
	case NODE_SENTON:
	case NODE_SENTSINCE:
		if (!parse_date(value, &node_at(ctx, idx)->day)) {
			set_error(ctx, "Invalid search date parameter");
			return NO_NODE;
		}
		if (type == NODE_SENTBEFORE || type == NODE_SENTON ||
		    type == NODE_SENTSINCE)
			ctx->prog->needs |= IMAP_SEARCH_NEEDS_HEADERS;
		return idx;
	case NODE_LARGER:
	case NODE_SMALLER:
		if (!str_to_u64(value, UINT64_MAX, &node_at(ctx, idx)->num)) {
			set_error(ctx, "Invalid search number parameter");
			return NO_NODE;
		}
		return idx;
	case NODE_HEADER:
		node_at(ctx, idx)->name = copy_str(str_cstr(field));
		node_at(ctx, idx)->name_len = strlen(field);
		ctx->prog->needs |= IMAP_SEARCH_NEEDS_HEADERS;
		break;
	case NODE_BODY:
	case NODE_TEXT:
		ctx->prog->needs |= IMAP_SEARCH_NEEDS_BODY;
		break;
	default:
		break;
	}
	return set_pattern(ctx, idx, value) ? idx : NO_NODE;
}

static uint32_t parse_key(struct parse_ctx *ctx, const struct imap_arg *args,
			  size_t count, size_t *pos, unsigned int depth)
{
	const struct imap_arg *arg = &args[(*pos)++];
	struct str key = arg->str;
	uint32_t idx;

	if (arg->type == IMAP_ARG_LIST) {
		if (depth + 1 > ctx->max_depth) {
			set_error(ctx, "Search query nested too deeply");
			return NO_NODE;
		}
		if (arg->list_count == 0) {
			set_error(ctx, "Empty list in search query");
			return NO_NODE;
		}
		return parse_and(ctx, arg->list, arg->list_count, depth + 1);
	}
	if (arg->type != IMAP_ARG_ATOM) {
		/* NIL, or a quoted string where a key belongs */
		set_error_arg(ctx, "Unknown argument", key);
		return NO_NODE;
	}

	for (size_t i = 0; i < sizeof(simple_keys) / sizeof(simple_keys[0]);
	     i++) {
		if (!str_eq_nocase(key, str_cstr(simple_keys[i].name)))
			continue;
		idx = node_new(ctx, simple_keys[i].type, COST_INDEX);
		if (idx != NO_NODE) {
			node_at(ctx, idx)->flag = simple_keys[i].flag;
			node_at(ctx, idx)->negate = simple_keys[i].negate;
		}
		return idx;
	}
	for (size_t i = 0; i < sizeof(arg_keys) / sizeof(arg_keys[0]); i++) {
		if (str_eq_nocase(key, str_cstr(arg_keys[i].name)))
			return parse_arg_key(ctx, arg_keys[i].type,
					     arg_keys[i].field, args, count,
					     pos);
	}

	if (str_eq_nocase(key, STR("NOT")) || str_eq_nocase(key, STR("OR"))) {
		bool is_or = key.len == 2;
		if (depth + 1 > ctx->max_depth) {
			set_error(ctx, "Search query nested too deeply");
			return NO_NODE;
		}
		idx = node_new(ctx, is_or ? NODE_OR : NODE_NOT, COST_INDEX);
		if (idx == NO_NODE)
			return NO_NODE;
		if (*pos >= count) {
			set_error(ctx, "Missing argument");
			return NO_NODE;
		}
		uint32_t a = parse_key(ctx, args, count, pos, depth + 1);
		if (a == NO_NODE)
			return NO_NODE;
		node_at(ctx, idx)->first = a;
		if (is_or) {
			if (*pos >= count) {
				set_error(ctx, "Missing argument");
				return NO_NODE;
			}
			uint32_t b =
			    parse_key(ctx, args, count, pos, depth + 1);
			if (b == NO_NODE)
				return NO_NODE;
			node_at(ctx, a)->next = b;
		}
		sort_children(ctx->prog, idx);
		return idx;
	}
	if (str_eq_nocase(key, STR("KEYWORD")) ||
	    str_eq_nocase(key, STR("UNKEYWORD"))) {
		struct str name;
		if (!next_astring(ctx, args, count, pos, &name))
			return NO_NODE;
		return parse_keyword(ctx, name, key.len == 9);
	}
	if (str_eq_nocase(key, STR("HEADER"))) {
		struct str field, value;
		if (!next_astring(ctx, args, count, pos, &field) ||
		    !next_astring(ctx, args, count, pos, &value))
			return NO_NODE;
		if (!field_name_valid(field)) {
			set_error(ctx, "Invalid header field name");
			return NO_NODE;
		}
		idx = node_new(ctx, NODE_HEADER, COST_HEADER);
		if (idx == NO_NODE)
			return NO_NODE;
		node_at(ctx, idx)->name = copy_str(field);
		node_at(ctx, idx)->name_len = field.len;
		ctx->prog->needs |= IMAP_SEARCH_NEEDS_HEADERS;
		return set_pattern(ctx, idx, value) ? idx : NO_NODE;
	}
	if (str_eq_nocase(key, STR("UID"))) {
		const struct imap_arg *set_arg;
		struct imap_seqset *set;
		const char *error;
		if (!next_arg(ctx, args, count, pos, &set_arg))
			return NO_NODE;
		if (set_arg->type != IMAP_ARG_ATOM ||
		    imap_seqset_parse(set_arg->str, &set, &error) < 0) {
			set_error(ctx, "Invalid UID messageset");
			return NO_NODE;
		}
		idx = node_new(ctx, NODE_UIDSET, COST_INDEX);
		if (idx == NO_NODE) {
			imap_seqset_free(&set);
			return NO_NODE;
		}
		node_at(ctx, idx)->seqset = set;
		return idx;
	}
	if (str_eq_nocase(key, STR("MODSEQ")))
		return parse_modseq(ctx, args, count, pos);
	if (key.len > 0 &&
	    (key.p[0] == '*' || (key.p[0] >= '0' && key.p[0] <= '9'))) {
		struct imap_seqset *set;
		const char *error;
		if (imap_seqset_parse(key, &set, &error) < 0) {
			set_error(ctx, error);
			return NO_NODE;
		}
		idx = node_new(ctx, NODE_SEQSET, COST_INDEX);
		if (idx == NO_NODE) {
			imap_seqset_free(&set);
			return NO_NODE;
		}
		node_at(ctx, idx)->seqset = set;
		return idx;
	}
	set_error_arg(ctx, "Unknown argument", key);
	return NO_NODE;
}

enum imap_search_parse_result
imap_search_parse(const struct imap_arg *args, size_t count,
		  const struct imap_search_parse_settings *set,
		  struct imap_search **prog_r, const char **error_r)
{
	struct parse_ctx ctx = {
	    .max_depth = set->max_depth != 0 ? set->max_depth
					     : IMAP_SEARCH_DEFAULT_MAX_DEPTH,
	    .max_keys = set->max_keys != 0 ? set->max_keys
					   : IMAP_SEARCH_DEFAULT_MAX_KEYS,
	    .allow_modseq = set->allow_modseq,
	};

	*prog_r = NULL;
	if (ctx.max_depth > IMAP_SEARCH_MAX_DEPTH)
		ctx.max_depth = IMAP_SEARCH_MAX_DEPTH;
	if (count > 0 && args[0].type == IMAP_ARG_ATOM &&
	    str_eq_nocase(args[0].str, STR("CHARSET"))) {
		struct str charset;
		if (count < 2 || !imap_arg_get_astring(&args[1], &charset)) {
			*error_r = "Missing CHARSET argument";
			return IMAP_SEARCH_PARSE_BAD;
		}
		/* Strings are matched as UTF-8, of which US-ASCII is a
		 * subset; converting other charsets is not worth it today
		 * (RFC 3501 requires only US-ASCII). */
		if (!str_eq_nocase(charset, STR("UTF-8")) &&
		    !str_eq_nocase(charset, STR("US-ASCII"))) {
			*error_r = "Unsupported charset";
			return IMAP_SEARCH_PARSE_BADCHARSET;
		}
		args += 2;
		count -= 2;
	}
	if (count == 0) {
		*error_r = "Missing SEARCH arguments";
		return IMAP_SEARCH_PARSE_BAD;
	}

	ctx.prog = xcalloc(1, sizeof(*ctx.prog));
	ctx.prog->root = parse_and(&ctx, args, count, 0);
	if (ctx.prog->root == NO_NODE) {
		imap_search_free(&ctx.prog);
		*error_r = ctx.error != NULL ? ctx.error : "Invalid search";
		return IMAP_SEARCH_PARSE_BAD;
	}
	*prog_r = ctx.prog;
	return IMAP_SEARCH_PARSE_OK;
}

void imap_search_free(struct imap_search **prog)
{
	if (*prog == NULL)
		return;
	for (size_t i = 0; i < (*prog)->count; i++) {
		struct node *n = &(*prog)->nodes[i];
		imap_seqset_free(&n->seqset);
		textmatch_pattern_free(&n->pat);
		free(n->name);
	}
	free((*prog)->nodes);
	xfree(prog);
}

/* ---- evaluation ---------------------------------------------------- */

struct eval_ctx {
	const struct imap_search *prog;
	const struct imap_search_message *msg;
	const struct imap_search_source *src;
	void *ctx;
	/* The Date: header is looked up once per message at most. */
	bool sent_known;
	int sent_ret;
	int64_t sent_day;
};

static int64_t day_of(int64_t unix_secs, int tz_min)
{
	return floor_div(unix_secs + (int64_t)tz_min * 60, 86400);
}

static int sent_day(struct eval_ctx *e, int64_t *day_r)
{
	if (!e->sent_known) {
		int64_t t = 0;
		int tz = 0;
		e->sent_known = true;
		e->sent_ret = e->src->sent_date == NULL
				  ? -1
				  : e->src->sent_date(e->ctx, &t, &tz);
		if (e->sent_ret == 0) {
			t = 0;
			tz = 0;
		}
		/* A hostile Date: header must not overflow the sum. */
		if (tz < -24 * 60 || tz > 24 * 60)
			tz = 0;
		if (t > INT64_MAX / 2 || t < INT64_MIN / 2)
			t = 0;
		e->sent_day = day_of(t, tz);
	}
	*day_r = e->sent_day;
	return e->sent_ret < 0 ? -1 : 1;
}

static int eval_node(struct eval_ctx *e, uint32_t idx);

static int eval_leaf(struct eval_ctx *e, const struct node *n)
{
	const struct imap_search_message *msg = e->msg;
	const struct imap_search_source *src = e->src;
	struct str name = str_from(n->name, n->name_len);
	int64_t day;

	switch (n->type) {
	case NODE_ALL:
		return 1;
	case NODE_SEQSET:
		return imap_seqset_contains(n->seqset, msg->seq, msg->max_seq);
	case NODE_UIDSET:
		return imap_seqset_contains(n->seqset, msg->uid, msg->max_uid);
	case NODE_FLAG:
		return (msg->flags & n->flag) != 0;
	case NODE_RECENT:
		return msg->recent;
	case NODE_NEW:
		return msg->recent && (msg->flags & IMAP_SEARCH_FLAG_SEEN) == 0;
	case NODE_KEYWORD:
		if (src->has_keyword == NULL)
			return -1;
		return src->has_keyword(e->ctx, name) ? 1 : 0;
	case NODE_LARGER:
		return msg->size > n->num;
	case NODE_SMALLER:
		return msg->size < n->num;
	case NODE_BEFORE:
	case NODE_ON:
	case NODE_SINCE: {
		int tz = msg->internal_tz_min;
		int64_t t = msg->internal_date;
		if (tz < -24 * 60 || tz > 24 * 60)
			tz = 0;
		if (t > INT64_MAX / 2 || t < INT64_MIN / 2)
			t = 0;
		day = day_of(t, tz);
		break;
	}
	case NODE_SENTBEFORE:
	case NODE_SENTON:
	case NODE_SENTSINCE:
		if (sent_day(e, &day) < 0)
			return -1;
		break;
	case NODE_HEADER:
		if (src->header_contains == NULL)
			return -1;
		return src->header_contains(e->ctx, name, n->pat);
	case NODE_BODY:
	case NODE_TEXT:
		/* RFC 3501 leaves "" open; every message contains the empty
		 * string, and this spares reading them all. */
		if (textmatch_pattern_is_empty(n->pat))
			return 1;
		if (src->body_contains == NULL)
			return -1;
		return src->body_contains(e->ctx, n->pat, n->type == NODE_TEXT);
	case NODE_MODSEQ:
		return msg->modseq >= n->num;
	default:
		return -1;
	}
	switch (n->type) {
	case NODE_BEFORE:
	case NODE_SENTBEFORE:
		return day < n->day;
	case NODE_ON:
	case NODE_SENTON:
		return day == n->day;
	default:
		return day >= n->day;
	}
}

static int eval_node(struct eval_ctx *e, uint32_t idx)
{
	const struct node *n = &e->prog->nodes[idx];
	int ret;

	switch (n->type) {
	case NODE_AND:
	case NODE_OR: {
		/* An answer that decides the whole node ends the walk; an
		 * error only matters when nothing decided it. */
		int decisive = n->type == NODE_AND ? 0 : 1;
		bool failed = false;
		for (uint32_t c = n->first; c != NO_NODE;
		     c = e->prog->nodes[c].next) {
			int r = eval_node(e, c);
			if (r == decisive)
				return decisive;
			if (r < 0)
				failed = true;
		}
		return failed ? -1 : !decisive;
	}
	case NODE_NOT:
		ret = eval_node(e, n->first);
		return ret < 0 ? -1 : !ret;
	default:
		ret = eval_leaf(e, n);
		if (ret < 0)
			return -1;
		ret = ret != 0;
		return n->negate ? !ret : ret;
	}
}

int imap_search_match(const struct imap_search *prog,
		      const struct imap_search_message *msg,
		      const struct imap_search_source *src, void *ctx)
{
	static const struct imap_search_source no_source = {0};
	struct eval_ctx e = {
	    .prog = prog,
	    .msg = msg,
	    .src = src != NULL ? src : &no_source,
	    .ctx = ctx,
	};
	return eval_node(&e, prog->root);
}

unsigned int imap_search_needs(const struct imap_search *prog)
{
	return prog->needs;
}

bool imap_search_needs_text(const struct imap_search *prog)
{
	return (prog->needs &
		(IMAP_SEARCH_NEEDS_HEADERS | IMAP_SEARCH_NEEDS_BODY)) != 0;
}

bool imap_search_uses_modseq(const struct imap_search *prog,
			     uint64_t *max_key_r)
{
	*max_key_r = prog->max_modseq;
	return prog->uses_modseq;
}
