#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend/mailcache.h"
#include "buf.h"
#include "lockfile.h"
#include "log.h"

/* ---- fixtures and helpers ---------------------------------------------- */

struct fixture {
	char dir[64];
};

static int log_lines;
static char last_log[512];

static void log_capture(enum log_level level, const char *line, void *context)
{
	(void)level;
	(void)context;
	log_lines++;
	snprintf(last_log, sizeof(last_log), "%s", line);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_mailcache.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	static const char *names[] = {MAILCACHE_FILE_NAME, MAILCACHE_LOCK_NAME,
				      MAILCACHE_TMP_NAME};
	char path[128];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", f->dir, names[i]);
		unlink(path);
	}
	assert_int_equal(rmdir(f->dir), 0);
	free(f);
	return 0;
}

static void cache_path(const struct fixture *f, char *out, size_t size)
{
	assert_true((size_t)snprintf(out, size, "%s/%s", f->dir,
				     MAILCACHE_FILE_NAME) < size);
}

static size_t read_file(const struct fixture *f, uint8_t *buf, size_t size)
{
	char path[128];
	cache_path(f, path, sizeof(path));
	int fd = open(path, O_RDONLY);
	assert_true(fd != -1);
	ssize_t n = read(fd, buf, size);
	assert_true(n >= 0 && (size_t)n < size);
	close(fd);
	return (size_t)n;
}

static void write_file(const struct fixture *f, const uint8_t *buf, size_t len)
{
	char path[128];
	cache_path(f, path, sizeof(path));
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd != -1);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

static off_t file_size(const struct fixture *f)
{
	char path[128];
	struct stat st;
	cache_path(f, path, sizeof(path));
	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

static double now_secs(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long maxrss_kib(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/* A value for (uid, field, version), of a length that depends on them. */
static size_t make_value(uint32_t uid, unsigned int field, unsigned int ver,
			 uint8_t *out, size_t size)
{
	size_t len = 1 + (uid * 37 + field * 11 + ver * 5) % 300;
	assert_true(len <= size);
	for (size_t i = 0; i < len; i++)
		out[i] = (uint8_t)(uid * 7 + field * 3 + ver + i * 13);
	return len;
}

static struct mailcache *open_ok(const struct fixture *f, uint32_t uv,
				 const struct mailcache_settings *set,
				 int expect)
{
	struct mailcache *c = NULL;
	const char *error = NULL;
	assert_int_equal(mailcache_open(f->dir, uv, set, &c, &error), expect);
	assert_non_null(c);
	return c;
}

static void add_ok(struct mailcache *c, uint32_t uid, unsigned int field,
		   unsigned int ver)
{
	uint8_t v[512];
	const char *error = NULL;
	size_t len = make_value(uid, field, ver, v, sizeof(v));
	assert_int_equal(mailcache_add(c, uid, field, v, len, &error), 1);
}

/* Asserts (uid, field) holds version ver (ver < 0: not cached). */
static void check_value(struct mailcache *c, uint32_t uid, unsigned int field,
			int ver)
{
	uint8_t v[512];
	const char *error = NULL;
	struct buf *b = buf_new(64, 4096);
	buf_append_cstr(b, "x"); /* the value is appended after it */
	int ret = mailcache_lookup(c, uid, field, b, &error);
	if (ver < 0) {
		assert_int_equal(ret, 0);
		assert_int_equal(b->len, 1);
	} else {
		size_t len =
		    make_value(uid, field, (unsigned int)ver, v, sizeof(v));
		assert_int_equal(ret, 1);
		assert_int_equal(b->len, 1 + len);
		assert_memory_equal(b->data + 1, v, len);
	}
	buf_free(&b);
}

static uint32_t records_of(const struct mailcache *c)
{
	struct mailcache_stats st;
	mailcache_get_stats(c, &st);
	return st.records;
}

static int compactions_of(const struct mailcache *c)
{
	struct mailcache_stats st;
	mailcache_get_stats(c, &st);
	return st.compactions;
}

/* ---- tests ------------------------------------------------------------------
 */

static void test_roundtrip_reopen(void **state)
{
	struct fixture *f = *state;
	const char *error = NULL;
	struct mailcache_stats st;

	struct mailcache *c = open_ok(f, 7, NULL, 1);
	check_value(c, 1, MAILCACHE_ENVELOPE, -1);
	for (uint32_t uid = 1; uid <= 50; uid++)
		for (unsigned int fl = 0; fl < MAILCACHE_FIELD_COUNT; fl++)
			if (fl != MAILCACHE_SENT_DATE)
				add_ok(c, uid, fl, 0);
	uint8_t sd[MAILCACHE_SENT_DATE_SIZE];
	mailcache_sent_date_encode(-1234567890123LL, -330, sd);
	assert_int_equal(
	    mailcache_add(c, 9, MAILCACHE_SENT_DATE, sd, sizeof(sd), &error),
	    1);
	for (uint32_t uid = 1; uid <= 50; uid++)
		check_value(c, uid, MAILCACHE_BODYSTRUCTURE, 0);
	mailcache_get_stats(c, &st);
	assert_int_equal(st.records, 50 * 4 + 1);
	assert_int_equal(st.file_bytes, (uint64_t)file_size(f));
	assert_int_equal(st.live_bytes + MAILCACHE_HEADER_SIZE, st.file_bytes);
	mailcache_close(&c);
	assert_null(c);

	c = open_ok(f, 7, NULL, 1);
	assert_int_equal(records_of(c), 50 * 4 + 1);
	for (uint32_t uid = 1; uid <= 50; uid++) {
		check_value(c, uid, MAILCACHE_ENVELOPE, 0);
		check_value(c, uid, MAILCACHE_BODY, 0);
		check_value(c, uid, MAILCACHE_HEADERS, 0);
	}
	check_value(c, 51, MAILCACHE_ENVELOPE, -1);
	check_value(c, 1, MAILCACHE_SENT_DATE, -1);
	struct buf *b = buf_new(16, 64);
	assert_int_equal(mailcache_lookup(c, 9, MAILCACHE_SENT_DATE, b, &error),
			 1);
	int64_t t;
	int32_t tz;
	assert_int_equal(mailcache_sent_date_decode(b->data, b->len, &t, &tz),
			 0);
	assert_true(t == -1234567890123LL);
	assert_int_equal(tz, -330);
	assert_int_equal(mailcache_sent_date_decode(b->data, 11, &t, &tz), -1);
	/* no room: an error, out unchanged */
	buf_reset(b);
	b->max = 4;
	assert_int_equal(mailcache_lookup(c, 3, MAILCACHE_ENVELOPE, b, &error),
			 -1);
	assert_int_equal(b->len, 0);
	buf_free(&b);

	/* supersede; adding an equal value again writes nothing */
	add_ok(c, 5, MAILCACHE_HEADERS, 1);
	check_value(c, 5, MAILCACHE_HEADERS, 1);
	off_t size = file_size(f);
	add_ok(c, 5, MAILCACHE_HEADERS, 1);
	assert_int_equal(file_size(f), size);
	/* an empty value */
	assert_int_equal(
	    mailcache_add(c, 60, MAILCACHE_HEADERS, NULL, 0, &error), 1);
	mailcache_close(&c);
	c = open_ok(f, 7, NULL, 1);
	check_value(c, 5, MAILCACHE_HEADERS, 1);
	check_value(c, 6, MAILCACHE_HEADERS, 0);
	b = buf_new(16, 64);
	assert_int_equal(mailcache_lookup(c, 60, MAILCACHE_HEADERS, b, &error),
			 1);
	assert_int_equal(b->len, 0);
	buf_free(&b);
	mailcache_close(&c);
	mailcache_close(&c); /* safe on NULL */
}

static void test_bad_arguments(void **state)
{
	struct fixture *f = *state;
	struct mailcache *c = NULL;
	const char *error = NULL;
	struct mailcache_settings set = {.max_size = 1000};
	uint8_t v[16] = {0};

	assert_int_equal(mailcache_open(f->dir, 0, NULL, &c, &error), -1);
	assert_null(c);
	assert_int_equal(mailcache_open(f->dir, 1, &set, &c, &error), -1);
	set =
	    (struct mailcache_settings){.max_value = MAILCACHE_VALUE_LIMIT + 1};
	assert_int_equal(mailcache_open(f->dir, 1, &set, &c, &error), -1);
	assert_int_equal(
	    mailcache_open("/nonexistent/dir", 1, NULL, &c, &error),
	    1); /* no file yet: an empty cache */
	assert_int_equal(mailcache_add(c, 1, MAILCACHE_BODY, v, 4, &error), -1);
	mailcache_close(&c);

	c = open_ok(f, 1, NULL, 1);
	assert_int_equal(mailcache_add(c, 0, MAILCACHE_BODY, v, 4, &error), -1);
	assert_int_equal(
	    mailcache_add(c, MAILCACHE_UID_LIMIT, MAILCACHE_BODY, v, 4, &error),
	    -1);
	assert_int_equal(
	    mailcache_add(c, 1, MAILCACHE_FIELD_COUNT, v, 4, &error), -1);
	assert_int_equal(
	    mailcache_add(c, 1, MAILCACHE_SENT_DATE, v, 11, &error), -1);
	assert_int_equal(mailcache_add(c, 1, MAILCACHE_BODY, NULL, 4, &error),
			 -1);
	struct buf *b = buf_new(16, 64);
	assert_int_equal(mailcache_lookup(c, 0, MAILCACHE_BODY, b, &error), -1);
	assert_int_equal(
	    mailcache_lookup(c, 1, MAILCACHE_FIELD_COUNT, b, &error), -1);
	buf_free(&b);
	uint32_t live[] = {3, 2};
	assert_int_equal(mailcache_expunge_sync(c, live, 2, 10, &error), -1);
	live[1] = 12;
	assert_int_equal(mailcache_expunge_sync(c, live, 2, 10, &error), -1);
	assert_int_equal(mailcache_expunge_sync(c, live, 2, 0, &error), -1);
	mailcache_close(&c);
	/* nothing was written */
	char path[128];
	cache_path(f, path, sizeof(path));
	assert_int_equal(access(path, F_OK), -1);
}

static void test_max_value(void **state)
{
	struct fixture *f = *state;
	const char *error = NULL;
	struct mailcache_settings set = {.max_value = 1000};
	uint8_t *big = calloc(1, 70000);
	assert_non_null(big);

	struct mailcache *c = open_ok(f, 1, &set, 1);
	assert_int_equal(mailcache_add(c, 1, MAILCACHE_BODY, big, 1001, &error),
			 0);
	assert_non_null(strstr(error, "size limit"));
	assert_int_equal(mailcache_add(c, 1, MAILCACHE_BODY, big, 1000, &error),
			 1);
	mailcache_close(&c);

	/* values bigger than the read window round-trip */
	set.max_value = 0;
	c = open_ok(f, 1, &set, 1);
	for (size_t i = 0; i < 70000; i++)
		big[i] = (uint8_t)(i * 31 + 7);
	assert_int_equal(
	    mailcache_add(c, 2, MAILCACHE_BODY, big, 70000, &error), 1);
	assert_int_equal(mailcache_compact(c, &error), 1);
	mailcache_close(&c);
	c = open_ok(f, 1, &set, 1);
	struct buf *b = buf_new(16, 100000);
	assert_int_equal(mailcache_lookup(c, 2, MAILCACHE_BODY, b, &error), 1);
	assert_int_equal(b->len, 70000);
	assert_memory_equal(b->data, big, 70000);
	buf_free(&b);
	mailcache_close(&c);
	free(big);
}

static void test_uidvalidity_change(void **state)
{
	struct fixture *f = *state;
	struct mailcache *c = NULL;
	const char *error = NULL;

	c = open_ok(f, 5, NULL, 1);
	add_ok(c, 1, MAILCACHE_ENVELOPE, 0);
	add_ok(c, 2, MAILCACHE_ENVELOPE, 0);
	mailcache_close(&c);

	log_lines = 0;
	assert_int_equal(mailcache_open(f->dir, 6, NULL, &c, &error), 0);
	assert_non_null(strstr(error, "UIDVALIDITY 5 in the file, 6"));
	assert_int_equal(log_lines, 1);
	assert_non_null(strstr(last_log, "discarding"));
	check_value(c, 1, MAILCACHE_ENVELOPE, -1);
	assert_int_equal(records_of(c), 0);
	add_ok(c, 3, MAILCACHE_ENVELOPE, 0); /* replaces the file */
	check_value(c, 1, MAILCACHE_ENVELOPE, -1);
	mailcache_close(&c);

	/* an older mailbox view leaves a newer file alone */
	assert_int_equal(mailcache_open(f->dir, 5, NULL, &c, &error), 0);
	assert_non_null(strstr(error, "UIDVALIDITY 6 in the file, 5"));
	off_t size = file_size(f);
	uint8_t v[4] = {1, 2, 3, 4};
	assert_int_equal(mailcache_add(c, 1, MAILCACHE_BODY, v, 4, &error), 0);
	assert_non_null(strstr(error, "newer"));
	assert_int_equal(file_size(f), size);
	mailcache_close(&c);

	c = open_ok(f, 6, NULL, 1);
	assert_int_equal(records_of(c), 1);
	check_value(c, 3, MAILCACHE_ENVELOPE, 0);
	check_value(c, 2, MAILCACHE_ENVELOPE, -1);
	mailcache_close(&c);
}

static void test_garbage_file(void **state)
{
	struct fixture *f = *state;
	struct mailcache *c = NULL;
	const char *error = NULL;
	uint8_t buf[4096];

	srand(7);
	for (int round = 0; round < 20; round++) {
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = (uint8_t)rand();
		if (round % 2 == 1) /* the right magic, garbage after it */
			memcpy(buf, "MRCACHE1", 8);
		size_t len = (size_t)(rand() % (int)sizeof(buf));
		write_file(f, buf, len);
		assert_int_equal(mailcache_open(f->dir, 1, NULL, &c, &error),
				 0);
		assert_non_null(error);
		for (uint32_t uid = 1; uid < 20; uid++)
			check_value(c, uid, MAILCACHE_BODY, -1);
		add_ok(c, 4, MAILCACHE_BODY, 0);
		mailcache_close(&c);
		c = open_ok(f, 1, NULL, 1);
		assert_int_equal(records_of(c), 1);
		check_value(c, 4, MAILCACHE_BODY, 0);
		mailcache_close(&c);
	}
	write_file(f, buf, 0);
	assert_int_equal(mailcache_open(f->dir, 1, NULL, &c, &error), 0);
	assert_string_equal(error, "empty file");
	mailcache_close(&c);
}

/* Writes a small file; ends_r[i] is where record i ends. */
static size_t build_small(const struct fixture *f, uint8_t *buf, size_t size,
			  uint64_t ends_r[6])
{
	char path[128];
	cache_path(f, path, sizeof(path));
	unlink(path);
	struct mailcache *c = open_ok(f, 3, NULL, 1);
	struct mailcache_stats st;
	for (uint32_t i = 0; i < 6; i++) {
		add_ok(c, 10 + i, i % 3, 0);
		mailcache_get_stats(c, &st);
		ends_r[i] = st.file_bytes;
	}
	mailcache_close(&c);
	size_t len = read_file(f, buf, size);
	assert_int_equal(len, ends_r[5]);
	return len;
}

static void test_truncated_every_offset(void **state)
{
	struct fixture *f = *state;
	struct mailcache *c = NULL;
	const char *error = NULL;
	uint8_t file[4096];
	uint64_t ends[6];

	size_t len = build_small(f, file, sizeof(file), ends);
	for (size_t cut = 0; cut <= len; cut++) {
		write_file(f, file, cut);
		int ret = mailcache_open(f->dir, 3, NULL, &c, &error);
		assert_int_equal(ret, cut < MAILCACHE_HEADER_SIZE ? 0 : 1);
		uint32_t whole = 0;
		for (uint32_t i = 0; i < 6; i++) {
			bool in = ends[i] <= cut;
			whole += in;
			check_value(c, 10 + i, i % 3, in ? 0 : -1);
		}
		assert_int_equal(records_of(c), whole);
		/* the next add cuts the torn tail and appends after the
		 * last whole record */
		add_ok(c, 99, MAILCACHE_HEADERS, 0);
		struct mailcache_stats st;
		mailcache_get_stats(c, &st);
		assert_int_equal(st.file_bytes, (uint64_t)file_size(f));
		mailcache_close(&c);
		c = open_ok(f, 3, NULL, 1);
		assert_int_equal(records_of(c),
				 cut < MAILCACHE_HEADER_SIZE ? 1 : whole + 1);
		check_value(c, 99, MAILCACHE_HEADERS, 0);
		for (uint32_t i = 0; i < 6; i++)
			check_value(c, 10 + i, i % 3,
				    cut >= MAILCACHE_HEADER_SIZE &&
					    ends[i] <= cut
					? 0
					: -1);
		mailcache_close(&c);
	}
}

static void test_bad_record_crc(void **state)
{
	struct fixture *f = *state;
	struct mailcache *c = NULL;
	uint8_t file[4096], copy[4096];
	uint64_t ends[6];

	size_t len = build_small(f, file, sizeof(file), ends);

	/* a flipped value byte in record 2: only it is lost */
	memcpy(copy, file, len);
	copy[ends[1] + MAILCACHE_RECORD_HEAD_SIZE + 1] ^= 0x40;
	write_file(f, copy, len);
	c = open_ok(f, 3, NULL, 1);
	assert_int_equal(records_of(c), 6);
	log_lines = 0;
	check_value(c, 12, 2, -1);
	assert_int_equal(log_lines, 1);
	assert_non_null(strstr(last_log, "bad record"));
	check_value(c, 12, 2, -1); /* dropped from the view */
	for (uint32_t i = 0; i < 6; i++)
		if (i != 2)
			check_value(c, 10 + i, i % 3, 0);
	assert_int_equal(records_of(c), 5);
	/* the next write compacts it away */
	add_ok(c, 12, 2, 0);
	assert_int_equal(compactions_of(c), 1);
	mailcache_close(&c);
	c = open_ok(f, 3, NULL, 1);
	for (uint32_t i = 0; i < 6; i++)
		check_value(c, 10 + i, i % 3, 0);
	assert_int_equal((uint64_t)file_size(f), ends[5]);
	mailcache_close(&c);

	/* a flipped head byte in record 3: it and what follows are a torn
	 * tail */
	memcpy(copy, file, len);
	copy[ends[2] + 2] ^= 0x01;
	write_file(f, copy, len);
	c = open_ok(f, 3, NULL, 1);
	assert_int_equal(records_of(c), 3);
	for (uint32_t i = 0; i < 6; i++)
		check_value(c, 10 + i, i % 3, i < 3 ? 0 : -1);
	log_lines = 0;
	add_ok(c, 13, 0, 0);
	assert_non_null(strstr(last_log, "cutting a torn tail"));
	mailcache_close(&c);
	c = open_ok(f, 3, NULL, 1);
	assert_int_equal(records_of(c), 4);
	check_value(c, 13, 0, 0);
	check_value(c, 14, 1, -1);
	mailcache_close(&c);

	/* a bad value in the last record (a crash mid-write with the head
	 * already there) */
	memcpy(copy, file, len);
	copy[len - 1] ^= 0xff;
	write_file(f, copy, len);
	c = open_ok(f, 3, NULL, 1);
	check_value(c, 15, 2, -1);
	check_value(c, 14, 1, 0);
	mailcache_close(&c);

	/* zeros after the last record (a crash on a file system that
	 * extended the file first) */
	memset(copy, 0, sizeof(copy));
	memcpy(copy, file, len);
	write_file(f, copy, len + 100);
	c = open_ok(f, 3, NULL, 1);
	assert_int_equal(records_of(c), 6);
	add_ok(c, 30, 0, 0);
	mailcache_close(&c);
	assert_int_equal((uint64_t)file_size(f),
			 len + MAILCACHE_RECORD_HEAD_SIZE +
			     make_value(30, 0, 0, copy, sizeof(copy)));
}

static void test_huge_garbage(void **state)
{
	struct fixture *f = *state;
	struct mailcache *c = NULL;
	const char *error = NULL;
	char path[128];
	uint8_t head[4096];
	uint64_t ends[6];

	cache_path(f, path, sizeof(path));
	srand(11);
	for (int variant = 0; variant < 3; variant++) {
		struct mailcache_settings set = {0};
		for (size_t i = 0; i < sizeof(head); i++)
			head[i] = (uint8_t)rand();
		size_t keep = sizeof(head);
		if (variant >= 1) { /* a valid file, then zeros / garbage */
			keep = build_small(f, head, sizeof(head), ends);
			set.max_size = 1ull << 30; /* 200 MB is allowed */
		}
		if (variant == 1)
			memset(head + keep, 0, sizeof(head) - keep);
		write_file(f, head, sizeof(head));
		assert_int_equal(truncate(path, 200L << 20), 0);

		long rss0 = maxrss_kib();
		double t0 = now_secs();
		int ret = mailcache_open(f->dir, 3, &set, &c, &error);
		double secs = now_secs() - t0;
		assert_true(secs < 1.0);
		assert_true(maxrss_kib() - rss0 < 4096);
		struct mailcache_stats st;
		mailcache_get_stats(c, &st);
		assert_true(st.memory < 64 * 1024);
		if (variant == 0) {
			assert_int_equal(ret, 0);
			assert_string_equal(error, "bad magic");
			assert_int_equal(st.records, 0);
		} else {
			assert_int_equal(ret, 1);
			assert_int_equal(st.records, 6);
			assert_int_equal(st.file_bytes, keep);
		}
		add_ok(c, 77, MAILCACHE_BODY, 0);
		mailcache_close(&c);
		assert_true(file_size(f) < 4096);
		c = open_ok(f, 3, &set, 1);
		check_value(c, 77, MAILCACHE_BODY, 0);
		mailcache_close(&c);
	}

	/* over twice the size limit: discarded without reading records */
	struct mailcache_settings small = {.max_size = 64 * 1024};
	assert_int_equal(truncate(path, 200 * 1024), 0);
	assert_int_equal(mailcache_open(f->dir, 3, &small, &c, &error), 0);
	assert_non_null(strstr(error, "over twice the size limit"));
	mailcache_close(&c);
}

static void test_size_limit_compaction(void **state)
{
	struct fixture *f = *state;
	const char *error = NULL;
	struct mailcache_settings set = {.max_size = 64 * 1024};
	uint8_t v[1024];

	/* rewriting values leaves dead records: compaction keeps the file
	 * under the limit and the newest values */
	struct mailcache *c = open_ok(f, 1, &set, 1);
	for (unsigned int ver = 0; ver < 40; ver++)
		for (uint32_t uid = 1; uid <= 30; uid++)
			add_ok(c, uid, MAILCACHE_HEADERS, ver);
	assert_true(compactions_of(c) >= 2);
	assert_true(file_size(f) <= 64 * 1024);
	mailcache_close(&c);
	c = open_ok(f, 1, &set, 1);
	assert_int_equal(records_of(c), 30);
	for (uint32_t uid = 1; uid <= 30; uid++)
		check_value(c, uid, MAILCACHE_HEADERS, 39);

	/* full of live records: refused, nothing lost */
	memset(v, 'v', sizeof(v));
	uint32_t uid = 100;
	int ret;
	while ((ret = mailcache_add(c, uid, MAILCACHE_BODY, v, sizeof(v),
				    &error)) == 1)
		uid++;
	assert_int_equal(ret, 0);
	assert_string_equal(error, "cache file full");
	assert_true(uid > 100 + 50);
	assert_true(file_size(f) <= 64 * 1024);
	struct buf *b = buf_new(16, 4096);
	assert_int_equal(
	    mailcache_lookup(c, uid - 1, MAILCACHE_BODY, b, &error), 1);
	assert_memory_equal(b->data, v, sizeof(v));
	buf_free(&b);
	uint32_t last = uid - 1;

	/* expunge most messages: the dead pass half and the file shrinks */
	uint32_t live[8];
	size_t n = 0;
	for (uid = 100; uid < last - 2 && n < 8; uid += 7)
		live[n++] = uid;
	/* UIDs from uidnext on belong to a newer view and are kept */
	uint32_t uidnext = last - 2;
	assert_int_equal(mailcache_expunge_sync(c, live, n, uidnext, &error),
			 1);
	mailcache_close(&c);
	assert_true(file_size(f) < 16 * 1024);
	c = open_ok(f, 1, &set, 1);
	assert_int_equal(records_of(c), n + 3);
	b = buf_new(16, 4096);
	for (uid = 1; uid <= last; uid++) {
		bool keep = uid >= uidnext;
		for (size_t i = 0; i < n; i++)
			keep = keep || live[i] == uid;
		buf_reset(b);
		assert_int_equal(
		    mailcache_lookup(c, uid, MAILCACHE_BODY, b, &error),
		    keep ? 1 : 0);
		check_value(c, uid, MAILCACHE_HEADERS, -1);
	}
	buf_free(&b);
	/* nothing more to drop */
	assert_int_equal(mailcache_expunge_sync(c, live, n, uidnext, &error),
			 0);
	mailcache_close(&c);
}

static void test_record_cap(void **state)
{
	struct fixture *f = *state;
	const char *error = NULL;
	struct mailcache_settings set = {.max_records = 10};
	uint8_t v[4] = {1, 2, 3, 4};

	struct mailcache *c = open_ok(f, 1, NULL, 1);
	for (uint32_t uid = 1; uid <= 20; uid++)
		add_ok(c, uid, MAILCACHE_ENVELOPE, 0);
	mailcache_close(&c);

	c = open_ok(f, 1, &set, 1);
	struct mailcache_stats st;
	mailcache_get_stats(c, &st);
	assert_int_equal(st.records, 10);
	assert_true(st.memory < 32 * 1024);
	check_value(c, 10, MAILCACHE_ENVELOPE, 0);
	check_value(c, 11, MAILCACHE_ENVELOPE, -1);
	/* a write first compacts to what the view holds, then the cap */
	assert_int_equal(mailcache_add(c, 30, MAILCACHE_BODY, v, 4, &error), 0);
	assert_string_equal(error, "record cap reached");
	assert_int_equal(compactions_of(c), 1);
	add_ok(c, 5, MAILCACHE_ENVELOPE, 1); /* superseding is allowed */
	mailcache_close(&c);
	c = open_ok(f, 1, NULL, 1);
	assert_int_equal(records_of(c), 10);
	check_value(c, 5, MAILCACHE_ENVELOPE, 1);
	mailcache_close(&c);
}

static void test_reader_sees_writers(void **state)
{
	struct fixture *f = *state;
	const char *error = NULL;

	struct mailcache *w = open_ok(f, 2, NULL, 1);
	add_ok(w, 1, MAILCACHE_BODY, 0);
	struct mailcache *r = open_ok(f, 2, NULL, 1);
	check_value(r, 1, MAILCACHE_BODY, 0);
	/* appended by another handle: found on the miss */
	add_ok(w, 2, MAILCACHE_BODY, 0);
	check_value(r, 2, MAILCACHE_BODY, 0);
	/* replaced by a compaction: the old file still reads, the new one
	 * is read on the next miss */
	add_ok(w, 1, MAILCACHE_BODY, 1);
	assert_int_equal(mailcache_compact(w, &error), 1);
	check_value(r, 1, MAILCACHE_BODY, 0); /* the old file's view */
	add_ok(w, 3, MAILCACHE_BODY, 0);
	check_value(r, 3, MAILCACHE_BODY, 0);
	check_value(r, 1, MAILCACHE_BODY, 1);
	/* the reader writes into the new file, not the unlinked one */
	add_ok(r, 4, MAILCACHE_BODY, 0);
	check_value(w, 4, MAILCACHE_BODY, 0);
	/* the file removed: an empty cache, created again by an add */
	char path[128];
	cache_path(f, path, sizeof(path));
	assert_int_equal(unlink(path), 0);
	check_value(r, 5, MAILCACHE_BODY, -1);
	assert_int_equal(records_of(r), 0);
	add_ok(r, 5, MAILCACHE_BODY, 0);
	check_value(w, 5, MAILCACHE_BODY, 0);
	mailcache_close(&w);
	mailcache_close(&r);
}

/* Adds uids from..from+count-1, each twice with different values. */
static int child_writes(const char *dir, uint32_t from, uint32_t count)
{
	struct mailcache_settings set = {.max_size = 64 * 1024,
					 .lock_timeout_msecs = 10000};
	struct mailcache *c = NULL;
	const char *error;
	uint8_t v[512];

	if (mailcache_open(dir, 9, &set, &c, &error) != 1)
		return 1;
	for (unsigned int ver = 0; ver < 2; ver++) {
		for (uint32_t uid = from; uid < from + count; uid++) {
			size_t len = make_value(uid, MAILCACHE_ENVELOPE, ver, v,
						sizeof(v));
			if (mailcache_add(c, uid, MAILCACHE_ENVELOPE, v, len,
					  &error) != 1)
				return 2;
		}
	}
	mailcache_close(&c);
	return 0;
}

static void test_concurrent_writers(void **state)
{
	struct fixture *f = *state;
	pid_t pids[2];

	for (int i = 0; i < 2; i++) {
		pids[i] = fork();
		assert_true(pids[i] != -1);
		if (pids[i] == 0)
			_exit(child_writes(f->dir, 1000 + (uint32_t)i * 1000,
					   120));
	}
	assert_int_equal(child_writes(f->dir, 1, 120), 0);
	for (int i = 0; i < 2; i++) {
		int st;
		assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 0);
	}
	struct mailcache_settings set = {.max_size = 64 * 1024};
	struct mailcache *c = open_ok(f, 9, &set, 1);
	assert_int_equal(records_of(c), 360);
	struct mailcache_stats st;
	mailcache_get_stats(c, &st);
	assert_int_equal(st.file_bytes, (uint64_t)file_size(f));
	for (uint32_t uid = 1; uid <= 120; uid++)
		check_value(c, uid, MAILCACHE_ENVELOPE, 1);
	for (uint32_t uid = 1000; uid < 1120; uid++)
		check_value(c, uid, MAILCACHE_ENVELOPE, 1);
	for (uint32_t uid = 2000; uid < 2120; uid++)
		check_value(c, uid, MAILCACHE_ENVELOPE, 1);
	mailcache_close(&c);
}

static void test_lock_timeout(void **state)
{
	struct fixture *f = *state;
	const char *error = NULL;
	int to_parent[2], to_child[2];
	char ch;
	uint8_t v[4] = {1, 2, 3, 4};

	assert_int_equal(pipe(to_parent), 0);
	assert_int_equal(pipe(to_child), 0);
	pid_t pid = fork();
	assert_true(pid != -1);
	if (pid == 0) {
		char path[128], err[256];
		snprintf(path, sizeof(path), "%s/%s", f->dir,
			 MAILCACHE_LOCK_NAME);
		int fd = lockfile_take(path, 1000, err, sizeof(err));
		if (fd < 0 || write(to_parent[1], "L", 1) != 1 ||
		    read(to_child[0], &ch, 1) != 1)
			_exit(1);
		_exit(0);
	}
	assert_int_equal(read(to_parent[0], &ch, 1), 1);
	struct mailcache_settings set = {.lock_timeout_msecs = 100};
	struct mailcache *c = open_ok(f, 1, &set, 1);
	double t0 = now_secs();
	assert_int_equal(mailcache_add(c, 1, MAILCACHE_BODY, v, 4, &error), 0);
	assert_true(now_secs() - t0 < 2.0);
	assert_non_null(strstr(error, "pid="));
	assert_int_equal(write(to_child[1], "x", 1), 1);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(mailcache_add(c, 1, MAILCACHE_BODY, v, 4, &error), 1);
	mailcache_close(&c);
	close(to_parent[0]);
	close(to_parent[1]);
	close(to_child[0]);
	close(to_child[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_roundtrip_reopen, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_bad_arguments, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_max_value, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_uidvalidity_change, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_garbage_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_truncated_every_offset, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_bad_record_crc, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_huge_garbage, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_size_limit_compaction, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_record_cap, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reader_sees_writers, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_writers, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_lock_timeout, setup, teardown),
	};
	log_set_callback(log_capture, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
