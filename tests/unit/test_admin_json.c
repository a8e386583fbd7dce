/* lib/json_flat: the admin API's request-body reader, the string writer
 * and the tree reader the CLI renders answers with. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json_flat.h"
#include "str.h"

static void flat_ok(const char *in, struct json_flat *j)
{
	const char *err = NULL;
	size_t pos = 0;
	int r = json_flat_parse(str_cstr(in), j, &err, &pos);
	if (r != 0)
		fail_msg("%s: %s at %zu", in, err, pos);
}

static void flat_bad(const char *in, size_t len, size_t want_pos)
{
	struct json_flat j;
	const char *err = NULL;
	size_t pos = 12345;
	assert_int_equal(json_flat_parse(str_from(in, len), &j, &err, &pos), -1);
	assert_non_null(err);
	if (pos != want_pos)
		fail_msg("%s: error '%s' at %zu, want %zu", in, err, pos, want_pos);
	assert_int_equal(j.count, 0);
}

#define BAD(lit, pos) flat_bad(lit, sizeof(lit) - 1, pos)

static void test_flat_basic(void **state)
{
	struct json_flat j;
	const char *s;
	uint64_t n;
	(void)state;

	flat_ok(" { \"backend\" : \"b1\" ,\"weight\":50 }\n", &j);
	assert_int_equal(j.count, 2);
	assert_int_equal(json_flat_get_str(&j, "backend", &s), 1);
	assert_string_equal(s, "b1");
	assert_int_equal(json_flat_get_u64(&j, "weight", &n), 1);
	assert_int_equal(n, 50);
	assert_int_equal(json_flat_get_u64(&j, "backend", &n), -1);
	assert_int_equal(json_flat_get_str(&j, "weight", &s), -1);
	assert_int_equal(json_flat_get_str(&j, "user", &s), 0);
	assert_null(json_flat_find(&j, "user"));
	flat_ok("{}", &j);
	assert_int_equal(j.count, 0);
	flat_ok("{\"a\":0}", &j);
	assert_int_equal(json_flat_get_u64(&j, "a", &n), 1);
	assert_int_equal(n, 0);
}

static void test_flat_escapes(void **state)
{
	struct json_flat j;
	const char *s;
	(void)state;

	flat_ok("{\"u\":\"a\\\"b\\\\c\\/d\\ne\\tf\\u0041\\u007e\\b\\f\\r\"}", &j);
	assert_int_equal(json_flat_get_str(&j, "u", &s), 1);
	assert_string_equal(s, "a\"b\\c/d\ne\tfA~\b\f\r");
	flat_ok("{\"\\u0061\":\"\"}", &j);
	assert_int_equal(json_flat_get_str(&j, "a", &s), 1);
	assert_string_equal(s, "");
}

static void test_flat_errors(void **state)
{
	(void)state;
	BAD("", 0);
	BAD("[]", 0);
	BAD("{", 1);
	BAD("{\"a\"}", 4);
	BAD("{\"a\":}", 5);
	BAD("{\"a\":1,}", 7);
	BAD("{\"a\":1 \"b\":2}", 7);
	BAD("{\"a\":1}x", 7);
	BAD("{\"a\":1}{}", 7);
	BAD("{a:1}", 1);
	BAD("{\"a\":true}", 5);
	BAD("{\"a\":null}", 5);
	BAD("{\"a\":{}}", 5);
	BAD("{\"a\":[]}", 5);
	BAD("{\"a\":-1}", 5);
	BAD("{\"a\":+1}", 5);
	BAD("{\"a\":01}", 5);
	BAD("{\"a\":1.5}", 6);
	BAD("{\"a\":1e3}", 6);
	BAD("{\"a\":1,\"a\":2}", 7);
	BAD("{\"a\":\"x", 7);
	BAD("{\"a\":\"\\x\"}", 6);
	BAD("{\"a\":\"\\u00\"}", 10);
	BAD("{\"a\":\"\\u00", 8);
	BAD("{\"a\":\"\\u00zz\"}", 10);
	BAD("{\"a\":\"\\u0000\"}", 6);
	BAD("{\"a\":\"\\u0080\"}", 6);
	BAD("{\"a\":\"\\ud800\"}", 6);
	BAD("{\"a\":\"\xc3\xa9\"}", 6);
	BAD("{\"a\":\"x\ty\"}", 7);
	BAD("{\"a\":\"x\0y\"}", 7);
	BAD("{\"a\":\"x\"\0}", 8);
}

static void test_flat_limits(void **state)
{
	char in[2048];
	struct json_flat j;
	uint64_t n;
	(void)state;

	/* JSON_FLAT_FIELDS_MAX fields, then one more */
	size_t len = 0;
	in[len++] = '{';
	for (int i = 0; i < JSON_FLAT_FIELDS_MAX; i++)
		len += (size_t)snprintf(in + len, sizeof(in) - len, "%s\"k%d\":%d",
					i ? "," : "", i, i);
	memcpy(in + len, "}", 2);
	flat_ok(in, &j);
	assert_int_equal(j.count, JSON_FLAT_FIELDS_MAX);
	size_t at = len + 1;
	memcpy(in + len, ",\"x\":1}", 8);
	flat_bad(in, strlen(in), at);

	/* a key of JSON_FLAT_KEY_MAX - 1 bytes, then one more */
	char key[JSON_FLAT_KEY_MAX + 1];
	memset(key, 'k', sizeof(key));
	key[JSON_FLAT_KEY_MAX - 1] = '\0';
	snprintf(in, sizeof(in), "{\"%s\":1}", key);
	flat_ok(in, &j);
	key[JSON_FLAT_KEY_MAX - 1] = 'k';
	key[JSON_FLAT_KEY_MAX] = '\0';
	snprintf(in, sizeof(in), "{\"%s\":1}", key);
	flat_bad(in, strlen(in), 2 + JSON_FLAT_KEY_MAX - 1);

	/* a value of JSON_FLAT_VALUE_MAX - 1 bytes, then one more */
	char val[JSON_FLAT_VALUE_MAX + 1];
	memset(val, 'v', sizeof(val));
	val[JSON_FLAT_VALUE_MAX - 1] = '\0';
	snprintf(in, sizeof(in), "{\"a\":\"%s\"}", val);
	flat_ok(in, &j);
	val[JSON_FLAT_VALUE_MAX - 1] = 'v';
	val[JSON_FLAT_VALUE_MAX] = '\0';
	snprintf(in, sizeof(in), "{\"a\":\"%s\"}", val);
	flat_bad(in, strlen(in), 6 + JSON_FLAT_VALUE_MAX - 1);

	/* JSON_FLAT_NUMBER_MAX, then one more */
	flat_ok("{\"a\":9007199254740991}", &j);
	assert_int_equal(json_flat_get_u64(&j, "a", &n), 1);
	assert_int_equal(n, JSON_FLAT_NUMBER_MAX);
	BAD("{\"a\":9007199254740992}", 5);
	BAD("{\"a\":99999999999999999999999}", 5);
}

static void test_append_str(void **state)
{
	struct buf *b = buf_new(16, 64);
	(void)state;

	assert_int_equal(json_append_str(b, STR("a\"b\\c\n\x01\xc3")), 0);
	assert_string_equal(buf_cstr(b), "\"a\\\"b\\\\c\\u000a\\u0001\\u00c3\"");
	/* what we write, the flat reader reads back (ASCII part) */
	struct json_flat j;
	const char *s, *err;
	size_t pos;
	buf_reset(b);
	buf_append_cstr(b, "{\"u\":");
	json_append_str(b, STR("x\"y\\z\t"));
	buf_append_cstr(b, "}");
	assert_int_equal(json_flat_parse(buf_str(b), &j, &err, &pos), 0);
	assert_int_equal(json_flat_get_str(&j, "u", &s), 1);
	assert_string_equal(s, "x\"y\\z\t");
	/* at the maximum: fails and leaves the buffer as it was */
	buf_reset(b);
	buf_append_cstr(b, "12345678901234567890123456789012345678901234567890");
	assert_int_equal(json_append_str(b, STR("abcdefghijklmn")), -1);
	assert_int_equal(b->len, 50);
	assert_int_equal(json_append_str(b, STR("abcdefghijkl")), 0);
	assert_int_equal(b->len, 64);
	buf_free(&b);
}

static void test_tree(void **state)
{
	const char *err;
	size_t pos;
	(void)state;
	const char *in = "{\"store\":\"embedded\",\"users\":2,\"backends\":["
			 "{\"name\":\"b1\",\"state\":\"up\",\"weight\":100,\"tag\":\"\"},"
			 "{\"name\":\"b\\u00e9\",\"state\":\"down\",\"weight\":0,\"tag\":\"x\"}],"
			 "\"x\":[true,false,null,-1.5e3,\"\\ud83d\\ude00\"]}";
	struct json_value *v = json_tree_parse(str_cstr(in), &err, &pos);
	assert_non_null(v);
	assert_int_equal(v->type, JSON_OBJECT);
	assert_int_equal(v->count, 4);
	const struct json_value *b = json_tree_get(v, "backends");
	assert_non_null(b);
	assert_int_equal(b->type, JSON_ARRAY);
	assert_int_equal(b->count, 2);
	assert_string_equal(json_tree_get(&b->items[1], "name")->text, "b\xc3\xa9");
	assert_string_equal(json_tree_get(&b->items[0], "weight")->text, "100");
	const struct json_value *x = json_tree_get(v, "x");
	assert_int_equal(x->items[0].type, JSON_TRUE);
	assert_int_equal(x->items[1].type, JSON_FALSE);
	assert_int_equal(x->items[2].type, JSON_NULL);
	assert_string_equal(x->items[3].text, "-1.5e3");
	assert_string_equal(x->items[4].text, "\xf0\x9f\x98\x80");
	assert_null(json_tree_get(v, "nope"));
	assert_null(json_tree_get(b, "name"));
	json_tree_free(&v);
	assert_null(v);
	json_tree_free(&v);
}

static void tree_bad(const char *in, size_t want_pos)
{
	const char *err = NULL;
	size_t pos = 999;
	struct json_value *v = json_tree_parse(str_cstr(in), &err, &pos);
	if (v != NULL)
		fail_msg("%s parsed", in);
	assert_non_null(err);
	if (pos != want_pos)
		fail_msg("%s: '%s' at %zu, want %zu", in, err, pos, want_pos);
}

static void test_tree_errors_and_depth(void **state)
{
	char in[128];
	const char *err;
	size_t pos;
	(void)state;

	tree_bad("", 0);
	tree_bad("[1,]", 3);
	tree_bad("{\"a\" 1}", 5);
	tree_bad("{\"a\":1,\"b\":[1,2}", 15);
	tree_bad("tru", 0);
	tree_bad("1.", 2);
	tree_bad("1e", 2);
	tree_bad("-", 1);
	tree_bad("\"\\udc00\"", 1);
	tree_bad("\"\\ud800\\u0041\"", 1);
	tree_bad("[1] 2", 4);
	/* depth: JSON_TREE_DEPTH_MAX levels are fine, one more is not */
	memset(in, '[', JSON_TREE_DEPTH_MAX);
	memset(in + JSON_TREE_DEPTH_MAX, ']', JSON_TREE_DEPTH_MAX);
	in[2 * JSON_TREE_DEPTH_MAX] = '\0';
	struct json_value *v = json_tree_parse(str_cstr(in), &err, &pos);
	assert_non_null(v);
	json_tree_free(&v);
	memset(in, '[', JSON_TREE_DEPTH_MAX + 1);
	memset(in + JSON_TREE_DEPTH_MAX + 1, ']', JSON_TREE_DEPTH_MAX + 1);
	in[2 * JSON_TREE_DEPTH_MAX + 2] = '\0';
	tree_bad(in, JSON_TREE_DEPTH_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flat_basic),
		cmocka_unit_test(test_flat_escapes),
		cmocka_unit_test(test_flat_errors),
		cmocka_unit_test(test_flat_limits),
		cmocka_unit_test(test_append_str),
		cmocka_unit_test(test_tree),
		cmocka_unit_test(test_tree_errors_and_depth),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
