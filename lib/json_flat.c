#include "json_flat.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "xmalloc.h"

struct json_lex {
	const uint8_t *p;
	size_t len;
	size_t pos;
	const char *error;
	size_t error_pos;
};

static int lex_fail(struct json_lex *l, const char *msg, size_t pos)
{
	l->error = msg;
	l->error_pos = pos;
	return -1;
}

static void skip_ws(struct json_lex *l)
{
	while (l->pos < l->len && (l->p[l->pos] == ' ' || l->p[l->pos] == '\t' ||
				   l->p[l->pos] == '\n' || l->p[l->pos] == '\r'))
		l->pos++;
}

static int peek(const struct json_lex *l)
{
	return l->pos < l->len ? l->p[l->pos] : -1;
}

static int hex4(struct json_lex *l, unsigned int *v_r)
{
	unsigned int v = 0;

	if (l->len - l->pos < 4)
		return lex_fail(l, "short \\u escape", l->pos);
	for (int i = 0; i < 4; i++) {
		uint8_t c = l->p[l->pos + (size_t)i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned int)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned int)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned int)(c - 'A' + 10);
		else
			return lex_fail(l, "bad \\u escape", l->pos + (size_t)i);
	}
	l->pos += 4;
	*v_r = v;
	return 0;
}

static size_t utf8_put(uint8_t *dst, unsigned int cp)
{
	if (cp < 0x80) {
		dst[0] = (uint8_t)cp;
		return 1;
	}
	if (cp < 0x800) {
		dst[0] = (uint8_t)(0xc0 | (cp >> 6));
		dst[1] = (uint8_t)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		dst[0] = (uint8_t)(0xe0 | (cp >> 12));
		dst[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		dst[2] = (uint8_t)(0x80 | (cp & 0x3f));
		return 3;
	}
	dst[0] = (uint8_t)(0xf0 | (cp >> 18));
	dst[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
	dst[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
	dst[3] = (uint8_t)(0x80 | (cp & 0x3f));
	return 4;
}

/* A string at l->pos (the opening quote) decoded into dst (cap bytes with
 * the NUL). ascii: the flat reader's rules. Never writes more than the
 * encoded length plus one. */
static int lex_string(struct json_lex *l, bool ascii, char *dst, size_t cap)
{
	size_t n = 0;
	uint8_t tmp[4];

	if (peek(l) != '"')
		return lex_fail(l, "string expected", l->pos);
	l->pos++;
	for (;;) {
		size_t at = l->pos;
		size_t k;
		if (l->pos >= l->len)
			return lex_fail(l, "unterminated string", l->pos);
		uint8_t c = l->p[l->pos++];
		if (c == '"')
			break;
		if (c < 0x20)
			return lex_fail(l, "control byte in string", at);
		if (c >= 0x80 && ascii)
			return lex_fail(l, "non-ASCII byte in string", at);
		if (c != '\\') {
			tmp[0] = c;
			k = 1;
		} else {
			if (l->pos >= l->len)
				return lex_fail(l, "unterminated string", l->pos);
			c = l->p[l->pos++];
			k = 1;
			switch (c) {
			case '"': case '\\': case '/':
				tmp[0] = c;
				break;
			case 'b': tmp[0] = '\b'; break;
			case 'f': tmp[0] = '\f'; break;
			case 'n': tmp[0] = '\n'; break;
			case 'r': tmp[0] = '\r'; break;
			case 't': tmp[0] = '\t'; break;
			case 'u': {
				unsigned int cp;
				if (hex4(l, &cp) < 0)
					return -1;
				if (cp == 0)
					return lex_fail(l, "\\u0000 is not allowed", at);
				if (ascii && cp >= 0x80)
					return lex_fail(l, "non-ASCII \\u escape", at);
				if (cp >= 0xdc00 && cp <= 0xdfff)
					return lex_fail(l, "lone surrogate", at);
				if (cp >= 0xd800 && cp <= 0xdbff) {
					unsigned int lo;
					if (l->len - l->pos < 2 || l->p[l->pos] != '\\' ||
					    l->p[l->pos + 1] != 'u')
						return lex_fail(l, "lone surrogate", at);
					l->pos += 2;
					if (hex4(l, &lo) < 0)
						return -1;
					if (lo < 0xdc00 || lo > 0xdfff)
						return lex_fail(l, "lone surrogate", at);
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				}
				k = utf8_put(tmp, cp);
				break;
			}
			default:
				return lex_fail(l, "bad escape", at);
			}
		}
		if (n + k >= cap)
			return lex_fail(l, "string too long", at);
		memcpy(dst + n, tmp, k);
		n += k;
	}
	dst[n] = '\0';
	return 0;
}

/* The span of a number token at l->pos, checked against the JSON
 * grammar; integer_only: the flat reader's rules. */
static int lex_number(struct json_lex *l, bool integer_only, struct str *num_r)
{
	size_t start = l->pos;

	if (!integer_only && peek(l) == '-')
		l->pos++;
	if (peek(l) == '0') {
		l->pos++;
	} else if (peek(l) >= '1' && peek(l) <= '9') {
		while (peek(l) >= '0' && peek(l) <= '9')
			l->pos++;
	} else {
		return lex_fail(l, integer_only ? "non-negative integer expected" :
						  "bad number", l->pos);
	}
	if (integer_only) {
		if (peek(l) >= '0' && peek(l) <= '9')
			return lex_fail(l, "leading zero", start);
		if (peek(l) == '.' || peek(l) == 'e' || peek(l) == 'E')
			return lex_fail(l, "only integers are allowed", l->pos);
	} else {
		if (peek(l) == '.') {
			l->pos++;
			if (!(peek(l) >= '0' && peek(l) <= '9'))
				return lex_fail(l, "bad number", l->pos);
			while (peek(l) >= '0' && peek(l) <= '9')
				l->pos++;
		}
		if (peek(l) == 'e' || peek(l) == 'E') {
			l->pos++;
			if (peek(l) == '+' || peek(l) == '-')
				l->pos++;
			if (!(peek(l) >= '0' && peek(l) <= '9'))
				return lex_fail(l, "bad number", l->pos);
			while (peek(l) >= '0' && peek(l) <= '9')
				l->pos++;
		}
	}
	*num_r = str_from((const char *)l->p + start, l->pos - start);
	return 0;
}

/* ---- flat objects ---------------------------------------------------------- */

const struct json_flat_field *json_flat_find(const struct json_flat *j,
					     const char *key)
{
	for (size_t i = 0; i < j->count; i++) {
		if (strcmp(j->fields[i].key, key) == 0)
			return &j->fields[i];
	}
	return NULL;
}

int json_flat_get_str(const struct json_flat *j, const char *key,
		      const char **value_r)
{
	const struct json_flat_field *f = json_flat_find(j, key);
	if (f == NULL)
		return 0;
	if (f->type != JSON_FLAT_STRING)
		return -1;
	*value_r = f->str;
	return 1;
}

int json_flat_get_u64(const struct json_flat *j, const char *key,
		      uint64_t *value_r)
{
	const struct json_flat_field *f = json_flat_find(j, key);
	if (f == NULL)
		return 0;
	if (f->type != JSON_FLAT_NUMBER)
		return -1;
	*value_r = f->num;
	return 1;
}

static int flat_member(struct json_lex *l, struct json_flat *out)
{
	size_t key_pos = l->pos;

	if (out->count >= JSON_FLAT_FIELDS_MAX)
		return lex_fail(l, "too many fields", l->pos);
	struct json_flat_field *f = &out->fields[out->count];
	memset(f, 0, sizeof(*f));
	if (lex_string(l, true, f->key, sizeof(f->key)) < 0)
		return -1;
	if (json_flat_find(out, f->key) != NULL)
		return lex_fail(l, "duplicate key", key_pos);
	skip_ws(l);
	if (peek(l) != ':')
		return lex_fail(l, "':' expected", l->pos);
	l->pos++;
	skip_ws(l);
	if (peek(l) == '"') {
		f->type = JSON_FLAT_STRING;
		if (lex_string(l, true, f->str, sizeof(f->str)) < 0)
			return -1;
	} else {
		struct str num;
		size_t num_pos = l->pos;
		f->type = JSON_FLAT_NUMBER;
		if (lex_number(l, true, &num) < 0)
			return -1;
		if (!str_to_u64(num, JSON_FLAT_NUMBER_MAX, &f->num))
			return lex_fail(l, "number too large", num_pos);
	}
	out->count++;
	return 0;
}

int json_flat_parse(struct str in, struct json_flat *out, const char **error_r,
		    size_t *error_pos_r)
{
	struct json_lex l = { (const uint8_t *)in.p, in.len, 0, NULL, 0 };
	int ret = -1;

	out->count = 0;
	skip_ws(&l);
	if (peek(&l) != '{') {
		lex_fail(&l, "object expected", l.pos);
		goto out;
	}
	l.pos++;
	skip_ws(&l);
	if (peek(&l) == '}') {
		l.pos++;
	} else {
		for (;;) {
			skip_ws(&l);
			if (flat_member(&l, out) < 0)
				goto out;
			skip_ws(&l);
			if (peek(&l) == ',') {
				l.pos++;
				continue;
			}
			if (peek(&l) == '}') {
				l.pos++;
				break;
			}
			lex_fail(&l, "',' or '}' expected", l.pos);
			goto out;
		}
	}
	skip_ws(&l);
	if (l.pos != l.len) {
		lex_fail(&l, "trailing bytes after the object", l.pos);
		goto out;
	}
	ret = 0;
out:
	if (ret < 0) {
		out->count = 0;
		*error_r = l.error;
		*error_pos_r = l.error_pos;
	}
	return ret;
}

int json_append_str(struct buf *out, struct str s)
{
	static const char hex[] = "0123456789abcdef";
	size_t start = out->len;

	if (buf_append_byte(out, '"') < 0)
		return -1;
	for (size_t i = 0; i < s.len; i++) {
		uint8_t c = (uint8_t)s.p[i];
		int r;
		if (c == '"' || c == '\\') {
			char e[2] = { '\\', (char)c };
			r = buf_append(out, e, 2);
		} else if (c < 0x20 || c >= 0x7f) {
			char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
			r = buf_append(out, e, 6);
		} else {
			r = buf_append_byte(out, c);
		}
		if (r < 0)
			goto full;
	}
	if (buf_append_byte(out, '"') < 0)
		goto full;
	return 0;
full:
	out->len = start;
	out->data[start] = '\0';
	return -1;
}

/* ---- the tree ----------------------------------------------------------------- */

static void value_clear(struct json_value *v)
{
	free(v->text);
	for (size_t i = 0; i < v->count; i++) {
		if (v->keys != NULL)
			free(v->keys[i]);
		value_clear(&v->items[i]);
	}
	free(v->keys);
	free(v->items);
	memset(v, 0, sizeof(*v));
}

void json_tree_free(struct json_value **v)
{
	if (*v == NULL)
		return;
	value_clear(*v);
	free(*v);
	*v = NULL;
}

static int tree_value(struct json_lex *l, struct json_value *v,
		      unsigned int depth);

static char *tree_string(struct json_lex *l)
{
	/* the decoded text is never longer than the encoded one */
	size_t cap = l->len - l->pos + 1;
	char *s = xmalloc(cap);
	if (lex_string(l, false, s, cap) < 0) {
		free(s);
		return NULL;
	}
	return s;
}

static int tree_append(struct json_value *v, size_t *cap)
{
	if (v->count == *cap) {
		*cap = *cap == 0 ? 4 : *cap * 2;
		v->items = xreallocarray(v->items, *cap, sizeof(*v->items));
		if (v->type == JSON_OBJECT)
			v->keys = xreallocarray(v->keys, *cap, sizeof(*v->keys));
	}
	memset(&v->items[v->count], 0, sizeof(v->items[0]));
	if (v->type == JSON_OBJECT)
		v->keys[v->count] = NULL;
	return 0;
}

static int tree_container(struct json_lex *l, struct json_value *v,
			  unsigned int depth)
{
	bool object = peek(l) == '{';
	char close = object ? '}' : ']';
	size_t cap = 0;

	if (depth >= JSON_TREE_DEPTH_MAX)
		return lex_fail(l, "nested too deeply", l->pos);
	v->type = object ? JSON_OBJECT : JSON_ARRAY;
	l->pos++;
	skip_ws(l);
	if (peek(l) == close) {
		l->pos++;
		return 0;
	}
	for (;;) {
		skip_ws(l);
		tree_append(v, &cap);
		if (object) {
			char *key = tree_string(l);
			if (key == NULL)
				return -1;
			v->keys[v->count] = key;
			skip_ws(l);
			if (peek(l) != ':') {
				v->count++;
				return lex_fail(l, "':' expected", l->pos);
			}
			l->pos++;
			skip_ws(l);
		}
		int r = tree_value(l, &v->items[v->count], depth + 1);
		v->count++;
		if (r < 0)
			return -1;
		skip_ws(l);
		if (peek(l) == ',') {
			l->pos++;
			continue;
		}
		if (peek(l) == close) {
			l->pos++;
			return 0;
		}
		return lex_fail(l, object ? "',' or '}' expected" :
					    "',' or ']' expected", l->pos);
	}
}

static int tree_literal(struct json_lex *l, const char *word)
{
	size_t n = strlen(word);
	if (l->len - l->pos < n || memcmp(l->p + l->pos, word, n) != 0)
		return lex_fail(l, "unexpected byte", l->pos);
	l->pos += n;
	return 0;
}

static int tree_value(struct json_lex *l, struct json_value *v,
		      unsigned int depth)
{
	struct str num;

	skip_ws(l);
	switch (peek(l)) {
	case '{':
	case '[':
		return tree_container(l, v, depth);
	case '"':
		v->type = JSON_STRING;
		v->text = tree_string(l);
		return v->text == NULL ? -1 : 0;
	case 't':
		v->type = JSON_TRUE;
		return tree_literal(l, "true");
	case 'f':
		v->type = JSON_FALSE;
		return tree_literal(l, "false");
	case 'n':
		v->type = JSON_NULL;
		return tree_literal(l, "null");
	case -1:
		return lex_fail(l, "value expected", l->pos);
	default:
		if (lex_number(l, false, &num) < 0)
			return -1;
		v->type = JSON_NUMBER;
		v->text = xstrndup(num.p, num.len);
		return 0;
	}
}

struct json_value *json_tree_parse(struct str in, const char **error_r,
				   size_t *error_pos_r)
{
	struct json_lex l = { (const uint8_t *)in.p, in.len, 0, NULL, 0 };
	struct json_value *v = xcalloc(1, sizeof(*v));

	if (tree_value(&l, v, 0) == 0) {
		skip_ws(&l);
		if (l.pos == l.len)
			return v;
		lex_fail(&l, "trailing bytes after the value", l.pos);
	}
	json_tree_free(&v);
	*error_r = l.error;
	*error_pos_r = l.error_pos;
	return NULL;
}

const struct json_value *json_tree_get(const struct json_value *obj,
				       const char *key)
{
	if (obj == NULL || obj->type != JSON_OBJECT)
		return NULL;
	for (size_t i = 0; i < obj->count; i++) {
		if (obj->keys[i] != NULL && strcmp(obj->keys[i], key) == 0)
			return &obj->items[i];
	}
	return NULL;
}
