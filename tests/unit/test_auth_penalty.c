#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth_penalty.h"

static struct auth_penalty *penalty_new(size_t max_entries)
{
	struct auth_penalty_settings set;
	const char *error = NULL;

	auth_penalty_settings_init(&set);
	assert_int_equal(set.base_ms, 2000);
	assert_int_equal(set.max_ms, 15000);
	set.decay_ms = 60000;
	set.max_entries = max_entries;
	struct auth_penalty *p = auth_penalty_new(&set, &error);
	assert_non_null(p);
	return p;
}

static void test_growth_and_cap(void **state)
{
	struct auth_penalty *p = penalty_new(100);
	const uint32_t want[] = {2000, 4000, 8000, 15000, 15000, 15000};
	uint64_t now = 1000;
	(void)state;

	assert_int_equal(auth_penalty_get(p, "192.0.2.1", "alice", now), 0);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		/* a new password each time (checksum i + 1) */
		auth_penalty_failure(p, "192.0.2.1", "alice", (uint32_t)i + 1,
				     now);
		now += 100;
		assert_int_equal(auth_penalty_get(p, "192.0.2.1", "alice", now),
				 want[i]);
	}
	/* many more failures never overflow past the cap */
	for (int i = 0; i < 100; i++)
		auth_penalty_failure(p, "192.0.2.1", "alice", 0, now);
	assert_int_equal(auth_penalty_get(p, "192.0.2.1", "alice", now), 15000);
	/* both keys were penalised separately */
	assert_int_equal(auth_penalty_get(p, "192.0.2.1", NULL, now), 15000);
	assert_int_equal(auth_penalty_get(p, NULL, "alice", now), 15000);
	assert_int_equal(auth_penalty_get(p, "192.0.2.2", "bob", now), 0);
	assert_int_equal(auth_penalty_count(p), 2);
	auth_penalty_free(&p);
	assert_null(p);
	auth_penalty_free(&p);
}

static void test_per_ip_and_user(void **state)
{
	struct auth_penalty *p = penalty_new(100);
	(void)state;

	/* one IP guessing many users: the IP is penalised for all of them */
	auth_penalty_failure(p, "198.51.100.7", "u1", 1, 0);
	auth_penalty_failure(p, "198.51.100.7", "u2", 2, 0);
	auth_penalty_failure(p, "198.51.100.7", "u3", 3, 0);
	assert_int_equal(auth_penalty_get(p, "198.51.100.7", "u4", 1), 8000);
	assert_int_equal(auth_penalty_get(p, "198.51.100.8", "u4", 1), 0);
	/* many IPs guessing one user: the user is penalised from anywhere */
	auth_penalty_failure(p, "203.0.113.1", "victim", 1, 0);
	auth_penalty_failure(p, "203.0.113.2", "victim", 2, 0);
	assert_int_equal(auth_penalty_get(p, "203.0.113.3", "victim", 1), 4000);
	/* success clears the user's penalty but not the IP's */
	auth_penalty_success(p, "203.0.113.2", "victim", 2);
	assert_int_equal(auth_penalty_get(p, "203.0.113.3", "victim", 3), 0);
	assert_int_equal(auth_penalty_get(p, "203.0.113.2", "victim", 3), 2000);
	/* no keys at all */
	assert_int_equal(auth_penalty_get(p, NULL, NULL, 3), 0);
	assert_int_equal(auth_penalty_get(p, "", "", 3), 0);
	auth_penalty_failure(p, NULL, NULL, 0, 3);
	auth_penalty_free(&p);
}

static void test_same_password(void **state)
{
	struct auth_penalty *p = penalty_new(100);
	(void)state;

	/* a client retrying a stale password does not escalate */
	for (int i = 0; i < 10; i++)
		auth_penalty_failure(p, "192.0.2.9", "phone", 0xabcd, 0);
	assert_int_equal(auth_penalty_get(p, "192.0.2.9", "phone", 1), 2000);
	auth_penalty_failure(p, "192.0.2.9", "phone", 0x1234, 1);
	assert_int_equal(auth_penalty_get(p, "192.0.2.9", "phone", 1), 4000);
	/* checksum 0 means unknown: always counts */
	auth_penalty_failure(p, "192.0.2.10", NULL, 0, 0);
	auth_penalty_failure(p, "192.0.2.10", NULL, 0, 0);
	assert_int_equal(auth_penalty_get(p, "192.0.2.10", NULL, 1), 4000);
	auth_penalty_free(&p);
}

static void test_decay(void **state)
{
	struct auth_penalty *p = penalty_new(100);
	(void)state;

	auth_penalty_failure(p, "192.0.2.1", "alice", 1, 1000);
	auth_penalty_failure(p, "192.0.2.1", "alice", 2, 2000);
	assert_int_equal(auth_penalty_get(p, "192.0.2.1", "alice", 61999),
			 4000);
	/* decay counts from the last failure */
	assert_int_equal(auth_penalty_get(p, "192.0.2.1", "alice", 62000), 0);
	assert_int_equal(auth_penalty_count(p), 0);
	/* after decay a failure starts again at the base */
	auth_penalty_failure(p, "192.0.2.1", "alice", 3, 70000);
	assert_int_equal(auth_penalty_get(p, "192.0.2.1", "alice", 70001),
			 2000);
	/* an expired entry is reset on the next failure too */
	auth_penalty_failure(p, "192.0.2.1", "alice", 4, 200000);
	assert_int_equal(auth_penalty_get(p, "192.0.2.1", "alice", 200001),
			 2000);
	/* a clock that goes backwards does not expire anything */
	assert_int_equal(auth_penalty_get(p, "192.0.2.1", "alice", 100), 2000);
	auth_penalty_free(&p);
}

static void test_ipv6_prefix(void **state)
{
	struct auth_penalty *p = penalty_new(100);
	(void)state;

	auth_penalty_failure(p, "2001:db8:1:2::1", NULL, 1, 0);
	auth_penalty_failure(p, "2001:db8:1:2:ffff::99", NULL, 2, 0);
	/* same /64 */
	assert_int_equal(auth_penalty_get(p, "2001:db8:1:2:aaaa::7", NULL, 1),
			 4000);
	assert_int_equal(auth_penalty_get(p, "2001:db8:1:3::1", NULL, 1), 0);
	/* IPv4-mapped IPv6 is the IPv4 address */
	auth_penalty_failure(p, "192.0.2.44", NULL, 1, 0);
	assert_int_equal(auth_penalty_get(p, "::ffff:192.0.2.44", NULL, 1),
			 2000);
	assert_int_equal(auth_penalty_get(p, "192.0.2.45", NULL, 1), 0);
	/* an unparsable address is still a key */
	auth_penalty_failure(p, "unix:/run/x", NULL, 1, 0);
	assert_int_equal(auth_penalty_get(p, "unix:/run/x", NULL, 1), 2000);
	assert_int_equal(auth_penalty_get(p, "unix:/run/y", NULL, 1), 0);
	auth_penalty_free(&p);
}

static void test_bounded(void **state)
{
	struct auth_penalty *p = penalty_new(64);
	char ip[32];
	(void)state;

	/* the oldest failures are evicted once the table is full */
	for (int i = 0; i < 1000; i++) {
		snprintf(ip, sizeof(ip), "10.0.%d.%d", i / 256, i % 256);
		auth_penalty_failure(p, ip, NULL, 1, (uint64_t)i);
		assert_true(auth_penalty_count(p) <= 64);
	}
	assert_int_equal(auth_penalty_count(p), 64);
	assert_int_equal(auth_penalty_get(p, "10.0.0.0", NULL, 1000), 0);
	assert_int_equal(auth_penalty_get(p, "10.0.3.231", NULL, 1000), 2000);
	/* a key that keeps failing stays (its failure is recent) */
	for (int i = 0; i < 200; i++) {
		auth_penalty_failure(p, "192.0.2.1", NULL, (uint32_t)i + 1,
				     2000 + (uint64_t)i * 2);
		snprintf(ip, sizeof(ip), "10.1.%d.%d", i / 256, i % 256);
		auth_penalty_failure(p, ip, NULL, 1,
				     2000 + (uint64_t)i * 2 + 1);
	}
	assert_int_equal(auth_penalty_get(p, "192.0.2.1", NULL, 3000), 15000);
	auth_penalty_free(&p);
}

static void test_settings(void **state)
{
	struct auth_penalty_settings set;
	const char *error = NULL;
	(void)state;

	auth_penalty_settings_init(&set);
	set.max_entries = 0;
	assert_null(auth_penalty_new(&set, &error));
	assert_non_null(error);
	auth_penalty_settings_init(&set);
	set.base_ms = 20000;
	assert_null(auth_penalty_new(&set, &error));
	auth_penalty_settings_init(&set);
	set.ipv6_prefix_bits = 0;
	assert_null(auth_penalty_new(&set, &error));
	auth_penalty_settings_init(&set);
	set.ipv6_prefix_bits = 128;
	set.max_entries = 1;
	struct auth_penalty *p = auth_penalty_new(&set, &error);
	assert_non_null(p);
	auth_penalty_failure(p, "2001:db8::1", NULL, 1, 0);
	assert_int_equal(auth_penalty_get(p, "2001:db8::2", NULL, 0), 0);
	auth_penalty_failure(p, "2001:db8::2", NULL, 1, 0);
	assert_int_equal(auth_penalty_count(p), 1);
	assert_int_equal(auth_penalty_get(p, "2001:db8::2", NULL, 0), 2000);
	auth_penalty_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_growth_and_cap),
	    cmocka_unit_test(test_per_ip_and_user),
	    cmocka_unit_test(test_same_password),
	    cmocka_unit_test(test_decay),
	    cmocka_unit_test(test_ipv6_prefix),
	    cmocka_unit_test(test_bounded),
	    cmocka_unit_test(test_settings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
