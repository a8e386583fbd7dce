#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "auth/auth_nets.h"
#include "auth/auth_user.h"

static struct auth_user_rules *rules(const char *chars, const char *format,
				     size_t max_len)
{
	const char *error = NULL;
	struct auth_user_rules *r =
	    auth_user_rules_new(chars, format, max_len, &error);
	if (r == NULL)
		print_error("rules: %s\n", error);
	assert_non_null(r);
	return r;
}

static int norm(const struct auth_user_rules *r, struct str user, char *out,
		size_t outsize)
{
	const char *error = NULL;
	int ret = auth_user_normalize(r, user, out, outsize, &error);

	if (ret < 0)
		assert_non_null(error);
	return ret;
}

static void test_defaults(void **state)
{
	struct auth_user_rules *r = rules(NULL, NULL, 0);
	char out[AUTH_USER_MAX_LEN + 1];
	(void)state;

	assert_int_equal(
	    norm(r, STR("Alice.Smith-1_x@Example.COM"), out, sizeof(out)), 0);
	/* %Lu by default */
	assert_string_equal(out, "alice.smith-1_x@example.com");
	assert_int_equal(norm(r, STR("bob"), out, sizeof(out)), 0);
	assert_string_equal(out, "bob");
	/* outside the default set */
	assert_int_equal(norm(r, STR("bob+tag"), out, sizeof(out)), -1);
	assert_string_equal(out, "");
	assert_int_equal(norm(r, STR("bob/../x"), out, sizeof(out)), -1);
	assert_int_equal(norm(r, STR("%u"), out, sizeof(out)), -1);
	assert_int_equal(norm(r, STR("*"), out, sizeof(out)), -1);
	assert_int_equal(norm(r, STR(""), out, sizeof(out)), -1);
	assert_int_equal(norm(r, STR_NULL, out, sizeof(out)), -1);
	auth_user_rules_free(&r);
	assert_null(r);
}

/* These can never pass, whatever the configuration says. */
static const struct str injections[] = {
    {"a\r\nb", 4},
    {"a\rb", 3},
    {"a\nb", 3},
    {"a\0b", 3},
    {"\0", 1},
    {"a\"b", 3},
    {"a'b", 3},
    {"a b", 3},
    {"a\tb", 3},
    {"a\\b", 3},
    {"\xc3\xa9t\xc3\xa9", 6},
    {"a\x80", 2},
    {"a\xff", 2},
    {"a\x7f", 2},
    {"a\x01", 2},
    {"a\x1b[31m", 7},
    {" alice", 6},
    {"alice ", 6},
    {"\"alice\"", 7},
    {"alice\r\n", 7},
};

static void test_injection_always_rejected(void **state)
{
	/* the most permissive configurations possible */
	const char *charsets[] = {
	    NULL,
	    "",
	    "abcdefghijklmnopqrstuvwxyz\r\n\"' \t\\\x7f\x01\x1b[31m",
	    "ab\xc3\xa9t\x80\xff",
	};
	const char *formats[] = {"%u", "%Lu", "%n", "%Ln"};
	char out[AUTH_USER_MAX_LEN + 1];
	(void)state;

	for (size_t c = 0; c < sizeof(charsets) / sizeof(charsets[0]); c++) {
		for (size_t f = 0; f < sizeof(formats) / sizeof(formats[0]);
		     f++) {
			struct auth_user_rules *r =
			    rules(charsets[c], formats[f], AUTH_USER_MAX_LEN);
			for (size_t i = 0;
			     i < sizeof(injections) / sizeof(injections[0]);
			     i++) {
				memset(out, 'X', sizeof(out));
				if (norm(r, injections[i], out, sizeof(out)) !=
				    -1)
					print_error("accepted injection %zu "
						    "with charset %zu\n",
						    i, c);
				assert_int_equal(
				    norm(r, injections[i], out, sizeof(out)),
				    -1);
				assert_string_equal(out, "");
			}
			auth_user_rules_free(&r);
		}
	}
	for (unsigned c = 0; c < 256; c++) {
		bool expect = c < 0x20 || c >= 0x7f || c == ' ' || c == '"' ||
			      c == '\'' || c == '\\';
		assert_int_equal(auth_user_char_forbidden((unsigned char)c),
				 expect);
	}
}

static void test_length(void **state)
{
	struct auth_user_rules *r = rules(NULL, "%u", 10);
	char out[AUTH_USER_MAX_LEN + 1];
	char big[AUTH_USER_MAX_LEN + 2];
	const char *error;
	(void)state;

	assert_int_equal(norm(r, STR("abcdefghij"), out, sizeof(out)), 0);
	assert_int_equal(norm(r, STR("abcdefghijk"), out, sizeof(out)), -1);
	/* the output buffer is a limit too */
	assert_int_equal(norm(r, STR("abcdefghij"), out, 10), -1);
	assert_int_equal(norm(r, STR("abcdefghi"), out, 10), 0);
	auth_user_rules_free(&r);

	/* defaults and hard cap */
	r = rules(NULL, NULL, 0);
	memset(big, 'a', sizeof(big));
	assert_int_equal(
	    norm(r, str_from(big, AUTH_USER_DEFAULT_MAX_LEN), out, sizeof(out)),
	    0);
	assert_int_equal(norm(r, str_from(big, AUTH_USER_DEFAULT_MAX_LEN + 1),
			      out, sizeof(out)),
			 -1);
	auth_user_rules_free(&r);
	r = rules("", "%u", AUTH_USER_MAX_LEN);
	assert_int_equal(
	    norm(r, str_from(big, AUTH_USER_MAX_LEN), out, sizeof(out)), 0);
	assert_int_equal(
	    norm(r, str_from(big, AUTH_USER_MAX_LEN + 1), out, sizeof(out)),
	    -1);
	auth_user_rules_free(&r);
	assert_null(
	    auth_user_rules_new(NULL, NULL, AUTH_USER_MAX_LEN + 1, &error));
	assert_non_null(error);
}

static void test_formats(void **state)
{
	char out[AUTH_USER_MAX_LEN + 1];
	struct auth_user_rules *r;
	const char *error;
	(void)state;

	r = rules(NULL, "%u", 0);
	assert_int_equal(norm(r, STR("Bob@Ex.com"), out, sizeof(out)), 0);
	assert_string_equal(out, "Bob@Ex.com");
	auth_user_rules_free(&r);
	r = rules(NULL, "%n", 0);
	assert_int_equal(norm(r, STR("Bob@Ex.com"), out, sizeof(out)), 0);
	assert_string_equal(out, "Bob");
	assert_int_equal(norm(r, STR("@Ex.com"), out, sizeof(out)), -1);
	auth_user_rules_free(&r);
	r = rules(NULL, "%Ln", 0);
	assert_int_equal(norm(r, STR("Bob@Ex.com"), out, sizeof(out)), 0);
	assert_string_equal(out, "bob");
	assert_int_equal(norm(r, STR("Bob"), out, sizeof(out)), 0);
	assert_string_equal(out, "bob");
	auth_user_rules_free(&r);
	r = rules(NULL, "%L{user}", 0);
	assert_int_equal(norm(r, STR("Bob@Ex.com"), out, sizeof(out)), 0);
	assert_string_equal(out, "bob@ex.com");
	auth_user_rules_free(&r);
	assert_null(auth_user_rules_new(NULL, "%d", 0, &error));
	assert_non_null(error);
	assert_null(auth_user_rules_new(NULL, "%Uu", 0, &error));

	/* a custom character set */
	r = rules("abc", "%u", 0);
	assert_int_equal(norm(r, STR("cab"), out, sizeof(out)), 0);
	assert_int_equal(norm(r, STR("cabd"), out, sizeof(out)), -1);
	assert_int_equal(norm(r, STR("CAB"), out, sizeof(out)), -1);
	auth_user_rules_free(&r);
	/* "" allows everything outside the forbidden set */
	r = rules("", "%u", 0);
	assert_int_equal(norm(r, STR("a+b=c/d%e*f!#$&()"), out, sizeof(out)),
			 0);
	assert_string_equal(out, "a+b=c/d%e*f!#$&()");
	auth_user_rules_free(&r);
}

static void test_split(void **state)
{
	struct str name, domain;
	(void)state;

	assert_true(auth_user_split(STR("user@example.com"), &name, &domain));
	assert_true(str_eq(name, STR("user")));
	assert_true(str_eq(domain, STR("example.com")));
	/* the first '@' splits, as Dovecot's %n/%d do */
	assert_true(auth_user_split(STR("a@b@c"), &name, &domain));
	assert_true(str_eq(name, STR("a")));
	assert_true(str_eq(domain, STR("b@c")));
	assert_false(auth_user_split(STR("plain"), &name, &domain));
	assert_true(str_eq(name, STR("plain")));
	assert_int_equal(domain.len, 0);
	assert_true(auth_user_split(STR("@d"), &name, &domain));
	assert_int_equal(name.len, 0);
	assert_true(auth_user_split(STR("u@"), &name, &domain));
	assert_int_equal(domain.len, 0);
}

static void test_nets(void **state)
{
	const char *error = NULL;
	(void)state;

	assert_int_equal(auth_nets_match("10.0.0.0/8", "10.1.2.3", &error), 1);
	assert_int_equal(auth_nets_match("10.0.0.0/8", "11.1.2.3", &error), 0);
	assert_int_equal(auth_nets_match("192.0.2.1", "192.0.2.1", &error), 1);
	assert_int_equal(auth_nets_match("192.0.2.1", "192.0.2.2", &error), 0);
	assert_int_equal(auth_nets_match("192.0.2.0/31", "192.0.2.1", &error),
			 1);
	assert_int_equal(auth_nets_match("192.0.2.0/0", "8.8.8.8", &error), 1);
	assert_int_equal(auth_nets_match("10.0.0.0/8, 2001:db8::/32",
					 "2001:db8:1::5", &error),
			 1);
	assert_int_equal(
	    auth_nets_match("2001:db8::/32", "2001:db9::5", &error), 0);
	assert_int_equal(
	    auth_nets_match("2001:db8::/33", "2001:db8:8000::1", &error), 0);
	/* IPv4-mapped clients match IPv4 networks */
	assert_int_equal(
	    auth_nets_match("10.0.0.0/8", "::ffff:10.9.9.9", &error), 1);
	assert_int_equal(auth_nets_match("local", NULL, &error), 1);
	assert_int_equal(auth_nets_match("local", "", &error), 1);
	assert_int_equal(auth_nets_match("local", "10.0.0.1", &error), 0);
	assert_int_equal(auth_nets_match("10.0.0.0/8", NULL, &error), 0);
	assert_int_equal(auth_nets_match("10.0.0.0/8", "junk", &error), 0);
	assert_int_equal(auth_nets_match("", "10.0.0.1", &error), 0);
	assert_int_equal(auth_nets_match("10.0.0.0/33", "10.0.0.1", &error),
			 -1);
	assert_non_null(error);
	assert_int_equal(auth_nets_match("10.0.0.0/x", "10.0.0.1", &error), -1);
	assert_int_equal(
	    auth_nets_match("10.0.0.0/8,bogus", "10.0.0.1", &error), -1);
	assert_int_equal(auth_nets_match("::/129", "::1", &error), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_injection_always_rejected),
	    cmocka_unit_test(test_length),
	    cmocka_unit_test(test_formats),
	    cmocka_unit_test(test_split),
	    cmocka_unit_test(test_nets),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
