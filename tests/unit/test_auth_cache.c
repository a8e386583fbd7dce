#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth_cache.h"
#include "auth/auth_fields.h"
#include "auth/auth_hash.h"

static void test_siphash_vectors(void **state)
{
	uint8_t key[16], msg[64];
	(void)state;

	for (unsigned i = 0; i < 16; i++)
		key[i] = (uint8_t)i;
	for (unsigned i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)i;
	/* SipHash-2-4 reference vectors (Aumasson & Bernstein) */
	assert_true(auth_hash(key, msg, 0) == 0x726fdb47dd0e0e31ULL);
	assert_true(auth_hash(key, msg, 1) == 0x74f839c593dc67fdULL);
	assert_true(auth_hash(key, msg, 8) == 0x93f5f5799a932462ULL);
	assert_true(auth_hash(key, msg, 15) == 0xa129ca6149be45e5ULL);
	assert_true(auth_hash(key, msg, 63) == 0x958a324ceb064572ULL);
}

static void test_fields(void **state)
{
	struct auth_fields *f = auth_fields_new();
	const char *k, *v;
	(void)state;

	assert_int_equal(auth_fields_count(f), 0);
	assert_null(auth_fields_get(f, "host"));
	auth_fields_set_cstr(f, "host", "10.0.0.5");
	auth_fields_set_cstr(f, "proxy", NULL);
	auth_fields_set(f, STR("port"), &STR("143"));
	assert_int_equal(auth_fields_count(f), 3);
	assert_string_equal(auth_fields_get(f, "host"), "10.0.0.5");
	assert_string_equal(auth_fields_get(f, "proxy"), "");
	assert_true(auth_fields_has(f, "proxy"));
	assert_false(auth_fields_has(f, "nologin"));
	/* replace keeps the position */
	auth_fields_set_cstr(f, "host", "h2");
	assert_int_equal(auth_fields_count(f), 3);
	auth_fields_at(f, 0, &k, &v);
	assert_string_equal(k, "host");
	assert_string_equal(v, "h2");
	auth_fields_at(f, 1, &k, &v);
	assert_string_equal(k, "proxy");
	assert_null(v);
	struct auth_fields *d = auth_fields_dup(f);
	auth_fields_remove(f, "proxy");
	auth_fields_remove(f, "absent");
	assert_int_equal(auth_fields_count(f), 2);
	assert_false(auth_fields_has(f, "proxy"));
	assert_true(auth_fields_has(d, "proxy"));
	assert_string_equal(auth_fields_get(d, "port"), "143");
	assert_true(auth_fields_memsize(d) > 0);
	assert_null(auth_fields_dup(NULL));
	assert_int_equal(auth_fields_count(NULL), 0);
	auth_fields_free(&f);
	auth_fields_free(&d);
	assert_null(f);
	auth_fields_free(&f);
}

static struct auth_cache *cache_new(uint64_t ttl, uint64_t neg_ttl,
				    size_t max_entries, size_t max_bytes)
{
	struct auth_cache_settings set = {
	    .ttl_ms = ttl,
	    .negative_ttl_ms = neg_ttl,
	    .max_entries = max_entries,
	    .max_bytes = max_bytes,
	};
	return auth_cache_new(&set);
}

static struct auth_fields *some_fields(const char *host)
{
	struct auth_fields *f = auth_fields_new();

	auth_fields_set_cstr(f, "host", host);
	auth_fields_set_cstr(f, "proxy", NULL);
	return f;
}

static void test_positive(void **state)
{
	struct auth_cache *c = cache_new(1000, 500, 0, 0);
	struct auth_fields *f = some_fields("h1"), *uf = auth_fields_new();
	struct auth_fields *out = NULL, *uout = NULL;
	struct auth_cache_stats st;
	(void)state;

	auth_fields_set_cstr(uf, "home", "/h");
	assert_int_equal(auth_cache_lookup(c, "alice", "pw", 0, &out, &uout),
			 AUTH_CACHE_MISS);
	assert_null(out);
	auth_cache_put(c, "alice", "pw", f, uf, 100);
	auth_fields_free(&f);
	auth_fields_free(&uf);

	/* the right password hits, with copies of the fields */
	assert_int_equal(auth_cache_lookup(c, "alice", "pw", 200, &out, &uout),
			 AUTH_CACHE_HIT);
	assert_string_equal(auth_fields_get(out, "host"), "h1");
	assert_true(auth_fields_has(out, "proxy"));
	assert_string_equal(auth_fields_get(uout, "home"), "/h");
	auth_fields_free(&out);
	auth_fields_free(&uout);
	/* any other password is a miss (the passdb decides) */
	assert_int_equal(auth_cache_lookup(c, "alice", "pW", 200, &out, NULL),
			 AUTH_CACHE_MISS);
	assert_null(out);
	assert_int_equal(auth_cache_lookup(c, "alice", "", 200, NULL, NULL),
			 AUTH_CACHE_MISS);
	assert_int_equal(auth_cache_lookup(c, "alice", "pw ", 200, NULL, NULL),
			 AUTH_CACHE_MISS);
	/* keys are exact */
	assert_int_equal(auth_cache_lookup(c, "Alice", "pw", 200, NULL, NULL),
			 AUTH_CACHE_MISS);
	/* a password-less lookup hits any positive entry */
	assert_int_equal(auth_cache_lookup(c, "alice", NULL, 200, &out, NULL),
			 AUTH_CACHE_HIT);
	auth_fields_free(&out);

	/* TTL: valid until 100 + 1000 */
	assert_int_equal(auth_cache_lookup(c, "alice", "pw", 1099, NULL, NULL),
			 AUTH_CACHE_HIT);
	assert_int_equal(auth_cache_lookup(c, "alice", "pw", 1100, NULL, NULL),
			 AUTH_CACHE_MISS);
	auth_cache_get_stats(c, &st);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.bytes, 0);
	assert_int_equal(st.hits, 3);
	assert_int_equal(st.misses, 6);

	/* replacing the entry: the old password no longer hits */
	auth_cache_put(c, "alice", "old", NULL, NULL, 2000);
	auth_cache_put(c, "alice", "new", NULL, NULL, 2000);
	assert_int_equal(auth_cache_lookup(c, "alice", "old", 2001, NULL, NULL),
			 AUTH_CACHE_MISS);
	assert_int_equal(auth_cache_lookup(c, "alice", "new", 2001, &out, NULL),
			 AUTH_CACHE_HIT);
	assert_int_equal(auth_fields_count(out), 0);
	auth_fields_free(&out);
	auth_cache_get_stats(c, &st);
	assert_int_equal(st.entries, 1);

	/* an entry without a verified password only answers lookups */
	auth_cache_put(c, "bob", NULL, NULL, NULL, 2000);
	assert_int_equal(auth_cache_lookup(c, "bob", "x", 2001, NULL, NULL),
			 AUTH_CACHE_MISS);
	assert_int_equal(auth_cache_lookup(c, "bob", NULL, 2001, NULL, NULL),
			 AUTH_CACHE_HIT);

	auth_cache_remove(c, "alice");
	auth_cache_remove(c, "nobody");
	assert_int_equal(auth_cache_lookup(c, "alice", "new", 2001, NULL, NULL),
			 AUTH_CACHE_MISS);
	auth_cache_clear(c);
	auth_cache_get_stats(c, &st);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.bytes, 0);
	auth_cache_free(&c);
	assert_null(c);
	auth_cache_free(&c);
}

static void test_negative(void **state)
{
	struct auth_cache *c = cache_new(1000, 300, 0, 0);
	(void)state;

	auth_cache_put_unknown(c, "ghost", 0);
	assert_int_equal(auth_cache_lookup(c, "ghost", "any", 299, NULL, NULL),
			 AUTH_CACHE_HIT_UNKNOWN);
	assert_int_equal(auth_cache_lookup(c, "ghost", NULL, 299, NULL, NULL),
			 AUTH_CACHE_HIT_UNKNOWN);
	/* the negative TTL is its own */
	assert_int_equal(auth_cache_lookup(c, "ghost", "any", 300, NULL, NULL),
			 AUTH_CACHE_MISS);
	/* a positive entry replaces a negative one and vice versa */
	auth_cache_put_unknown(c, "ghost", 400);
	auth_cache_put(c, "ghost", "pw", NULL, NULL, 401);
	assert_int_equal(auth_cache_lookup(c, "ghost", "pw", 402, NULL, NULL),
			 AUTH_CACHE_HIT);
	auth_cache_put_unknown(c, "ghost", 403);
	assert_int_equal(auth_cache_lookup(c, "ghost", "pw", 404, NULL, NULL),
			 AUTH_CACHE_HIT_UNKNOWN);
	auth_cache_free(&c);

	/* TTL 0 disables each kind */
	c = cache_new(0, 300, 0, 0);
	auth_cache_put(c, "a", "pw", NULL, NULL, 0);
	assert_int_equal(auth_cache_lookup(c, "a", "pw", 1, NULL, NULL),
			 AUTH_CACHE_MISS);
	auth_cache_put_unknown(c, "b", 0);
	assert_int_equal(auth_cache_lookup(c, "b", "pw", 1, NULL, NULL),
			 AUTH_CACHE_HIT_UNKNOWN);
	auth_cache_free(&c);
	c = cache_new(1000, 0, 0, 0);
	auth_cache_put_unknown(c, "b", 0);
	assert_int_equal(auth_cache_lookup(c, "b", "pw", 1, NULL, NULL),
			 AUTH_CACHE_MISS);
	auth_cache_free(&c);
}

static void test_lru_entries(void **state)
{
	struct auth_cache *c = cache_new(10000, 10000, 2, 0);
	struct auth_cache_stats st;
	(void)state;

	auth_cache_put(c, "a", "pa", NULL, NULL, 0);
	auth_cache_put(c, "b", "pb", NULL, NULL, 1);
	/* touching a makes b the least recently used */
	assert_int_equal(auth_cache_lookup(c, "a", "pa", 2, NULL, NULL),
			 AUTH_CACHE_HIT);
	auth_cache_put_unknown(c, "c", 3);
	assert_int_equal(auth_cache_lookup(c, "b", "pb", 4, NULL, NULL),
			 AUTH_CACHE_MISS);
	assert_int_equal(auth_cache_lookup(c, "a", "pa", 4, NULL, NULL),
			 AUTH_CACHE_HIT);
	assert_int_equal(auth_cache_lookup(c, "c", NULL, 4, NULL, NULL),
			 AUTH_CACHE_HIT_UNKNOWN);
	auth_cache_get_stats(c, &st);
	assert_int_equal(st.entries, 2);
	assert_int_equal(st.evictions, 1);
	/* a miss with a wrong password does not refresh the entry */
	assert_int_equal(auth_cache_lookup(c, "a", "wrong", 5, NULL, NULL),
			 AUTH_CACHE_MISS);
	assert_int_equal(auth_cache_lookup(c, "c", NULL, 6, NULL, NULL),
			 AUTH_CACHE_HIT_UNKNOWN);
	auth_cache_put(c, "d", "pd", NULL, NULL, 7);
	assert_int_equal(auth_cache_lookup(c, "a", "pa", 8, NULL, NULL),
			 AUTH_CACHE_MISS);
	auth_cache_free(&c);
}

static void test_lru_bytes(void **state)
{
	struct auth_cache *c;
	struct auth_cache_stats st;
	struct auth_fields *big = auth_fields_new();
	char value[2000];
	(void)state;

	memset(value, 'v', sizeof(value) - 1);
	value[sizeof(value) - 1] = '\0';
	auth_fields_set_cstr(big, "big", value);

	c = cache_new(10000, 10000, 0, 3000);
	auth_cache_put(c, "small1", "p", NULL, NULL, 0);
	auth_cache_put(c, "small2", "p", NULL, NULL, 0);
	auth_cache_get_stats(c, &st);
	assert_int_equal(st.entries, 2);
	assert_true(st.bytes < 3000);
	/* a 2 kB entry pushes out the oldest small one(s) */
	auth_cache_put(c, "big1", "p", big, NULL, 1);
	auth_cache_get_stats(c, &st);
	assert_true(st.bytes <= 3000);
	assert_int_equal(auth_cache_lookup(c, "big1", "p", 2, NULL, NULL),
			 AUTH_CACHE_HIT);
	/* a second big one evicts the first */
	auth_cache_put(c, "big2", "p", big, NULL, 3);
	assert_int_equal(auth_cache_lookup(c, "big1", "p", 4, NULL, NULL),
			 AUTH_CACHE_MISS);
	assert_int_equal(auth_cache_lookup(c, "big2", "p", 4, NULL, NULL),
			 AUTH_CACHE_HIT);
	auth_cache_get_stats(c, &st);
	assert_true(st.bytes <= 3000);
	assert_true(st.evictions >= 2);
	auth_cache_free(&c);

	/* an entry larger than the whole cache is not stored */
	c = cache_new(10000, 10000, 0, 1000);
	auth_cache_put(c, "huge", "p", big, NULL, 0);
	assert_int_equal(auth_cache_lookup(c, "huge", "p", 1, NULL, NULL),
			 AUTH_CACHE_MISS);
	auth_cache_get_stats(c, &st);
	assert_int_equal(st.entries, 0);
	auth_cache_free(&c);
	auth_fields_free(&big);
}

static void test_many(void **state)
{
	struct auth_cache_settings set;
	struct auth_cache *c;
	char user[32], pw[32];
	(void)state;

	auth_cache_settings_init(&set);
	assert_true(set.ttl_ms > 0 && set.negative_ttl_ms > 0);
	set.max_entries = 5000;
	set.max_bytes = 0;
	c = auth_cache_new(&set);
	for (int i = 0; i < 8000; i++) {
		snprintf(user, sizeof(user), "user%d", i);
		snprintf(pw, sizeof(pw), "pw%d", i);
		if (i % 2 == 0)
			auth_cache_put(c, user, pw, NULL, NULL, 0);
		else
			auth_cache_put_unknown(c, user, 0);
	}
	for (int i = 0; i < 8000; i++) {
		snprintf(user, sizeof(user), "user%d", i);
		snprintf(pw, sizeof(pw), "pw%d", i);
		enum auth_cache_result want = i < 3000 ? AUTH_CACHE_MISS
					      : i % 2 == 0
						  ? AUTH_CACHE_HIT
						  : AUTH_CACHE_HIT_UNKNOWN;
		assert_int_equal(auth_cache_lookup(c, user, pw, 1, NULL, NULL),
				 want);
	}
	auth_cache_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_siphash_vectors),
	    cmocka_unit_test(test_fields),
	    cmocka_unit_test(test_positive),
	    cmocka_unit_test(test_negative),
	    cmocka_unit_test(test_lru_entries),
	    cmocka_unit_test(test_lru_bytes),
	    cmocka_unit_test(test_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
