#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/uidlist.h"
#include "buf.h"
#include "log.h"

/* ---- fixtures and helpers ---------------------------------------------- */

struct fixture {
	char dir[64];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	strcpy(f->dir, "/tmp/test_uidlist.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	static const char *names[] = {UIDLIST_FILE_NAME, UIDLIST_LOCK_NAME,
				      "mailring-uidlist.tmp"};
	char path[128];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", f->dir, names[i]);
		unlink(path);
	}
	assert_int_equal(rmdir(f->dir), 0);
	free(f);
	return 0;
}

static int buf_sink(const void *data, size_t len, void *context)
{
	return buf_append(context, data, len);
}

static struct buf *serialize(const struct uidlist *list)
{
	struct buf *b = buf_new(1024, 64 << 20);
	assert_int_equal(uidlist_serialize(list, buf_sink, b), 0);
	return b;
}

static void append_ok(struct uidlist *list, const char *name, uint32_t uid)
{
	const char *error = NULL;
	uint32_t got = 0;
	assert_int_equal(uidlist_append(list, str_cstr(name), &got, &error),
			 UIDLIST_OK);
	assert_int_equal(got, uid);
}

static void assert_uid(const struct uidlist *list, const char *name,
		       uint32_t uid)
{
	struct str got;
	assert_int_equal(uidlist_lookup_name(list, str_cstr(name)), uid);
	if (uid != 0) {
		assert_true(uidlist_lookup_uid(list, uid, &got));
		assert_true(str_eq(got, str_cstr(name)));
	}
}

/* Events of one parse, as text: "H v n\n", "uid name\n", "=result". */
static int ev_header(const struct uidlist_header *hdr, void *context)
{
	return buf_printf(context, "H %u %u %u\n", hdr->version,
			  hdr->uidvalidity, hdr->uidnext);
}

static int ev_record(uint32_t uid, struct str name, void *context)
{
	return buf_printf(context, "%u %.*s\n", uid, STR_FMT(name));
}

/* Parses data split at the points given (sorted, < len; step 0: none)
 * or, with step > 0, in pieces of step bytes. */
static struct buf *parse_events(const uint8_t *data, size_t len, size_t split,
				size_t step)
{
	struct buf *ev = buf_new(256, 64 << 20);
	struct uidlist_parser *p = uidlist_parser_new(ev_header, ev_record, ev);
	enum uidlist_parse_result res = UIDLIST_PARSE_MORE;

	if (step > 0) {
		for (size_t i = 0; i < len; i += step)
			res = uidlist_parser_feed(
			    p, data + i, len - i < step ? len - i : step);
	} else {
		res = uidlist_parser_feed(p, data, split);
		res = uidlist_parser_feed(p, data + split, len - split);
	}
	(void)res;
	res = uidlist_parser_finish(p);
	uint64_t off = 0;
	const char *err = uidlist_parser_error(p, &off);
	buf_printf(ev, "=%d %s %llu\n", (int)res, err ? err : "-",
		   (unsigned long long)off);
	uidlist_parser_free(&p);
	assert_null(p);
	return ev;
}

static enum uidlist_parse_result parse_text(const char *text,
					    const char **error_r)
{
	struct uidlist_parser *p = uidlist_parser_new(NULL, NULL, NULL);
	uidlist_parser_feed(p, (const uint8_t *)text, strlen(text));
	enum uidlist_parse_result res = uidlist_parser_finish(p);
	*error_r = uidlist_parser_error(p, NULL);
	uidlist_parser_free(&p);
	return res;
}

static struct uidlist *sample_list(uint32_t n)
{
	struct uidlist *list = uidlist_new(0, 1000000);
	char name[64];
	assert_non_null(list);
	for (uint32_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "1700000%03u.M%uP42.host,S=%u", i,
			 i * 7, 1000 + i);
		append_ok(list, name, i + 1);
	}
	return list;
}

/* ---- tests --------------------------------------------------------------- */

static void test_uidvalidity_next(void **state)
{
	(void)state;
	assert_int_equal(uidlist_uidvalidity_next(0, 1700000000), 1700000000);
	assert_int_equal(uidlist_uidvalidity_next(1700000000, 1700000001),
			 1700000001);
	/* the clock went back, or did not move */
	assert_int_equal(uidlist_uidvalidity_next(1700000000, 1600000000),
			 1700000001);
	assert_int_equal(uidlist_uidvalidity_next(1700000000, 1700000000),
			 1700000001);
	assert_int_equal(uidlist_uidvalidity_next(0, 0), 1);
	assert_int_equal(uidlist_uidvalidity_next(5, -1), 6);
	assert_int_equal(uidlist_uidvalidity_next(5, (time_t)1 << 40), 6);
	assert_int_equal(uidlist_uidvalidity_next(UINT32_MAX, 1), 0);
}

static void test_names(void **state)
{
	(void)state;
	assert_true(uidlist_name_valid(STR("1700000000.M1P2.host,S=12")));
	assert_false(uidlist_name_valid(STR("")));
	assert_false(uidlist_name_valid(STR(".")));
	assert_false(uidlist_name_valid(STR("..")));
	assert_false(uidlist_name_valid(STR("a b")));
	assert_false(uidlist_name_valid(STR("a/b")));
	assert_false(uidlist_name_valid(STR("a:2,S")));
	assert_false(uidlist_name_valid(STR("a\nb")));
	assert_false(uidlist_name_valid(STR("a\0b")));
	assert_false(uidlist_name_valid(STR("caf\xc3\xa9")));
	char big[UIDLIST_NAME_MAX + 1];
	memset(big, 'x', sizeof(big));
	assert_true(uidlist_name_valid(str_from(big, UIDLIST_NAME_MAX)));
	assert_false(uidlist_name_valid(str_from(big, sizeof(big))));
}

static void test_roundtrip(void **state)
{
	struct fixture *f = *state;
	struct uidlist *list = uidlist_new(0, 100), *back = NULL;
	struct uidlist_lock *lock = NULL;
	const char *error = NULL;

	assert_non_null(list);
	assert_int_equal(uidlist_uidnext(list), 1);
	assert_true(uidlist_uidvalidity(list) > 1600000000);
	assert_int_equal(uidlist_read(f->dir, 100, &back, &error),
			 UIDLIST_NOT_FOUND);

	append_ok(list, "a1", 1);
	append_ok(list, "b2", 2);
	append_ok(list, "c3", 3);
	append_ok(list, "b2", 2); /* known name: same UID */
	assert_int_equal(uidlist_uidnext(list), 4);
	assert_int_equal(
	    uidlist_append(list, STR("x:2,S"), &(uint32_t){0}, &error),
	    UIDLIST_ERROR);

	assert_int_equal(uidlist_lock(f->dir, 1000, &lock, &error), UIDLIST_OK);
	assert_int_equal(uidlist_write(lock, list, &error), UIDLIST_OK);
	uidlist_unlock(&lock);
	assert_null(lock);

	assert_int_equal(uidlist_read(f->dir, 100, &back, &error), UIDLIST_OK);
	assert_int_equal(uidlist_uidvalidity(back), uidlist_uidvalidity(list));
	assert_int_equal(uidlist_uidnext(back), 4);
	assert_int_equal(uidlist_count(back), 3);
	assert_uid(back, "a1", 1);
	assert_uid(back, "b2", 2);
	assert_uid(back, "c3", 3);
	assert_uid(back, "d4", 0);
	assert_false(uidlist_lookup_uid(back, 4, NULL));
	assert_false(uidlist_lookup_uid(back, 0, NULL));
	uint32_t uid;
	struct str name;
	assert_true(uidlist_record_at(back, 2, &uid, &name));
	assert_int_equal(uid, 3);
	assert_false(uidlist_record_at(back, 3, &uid, &name));

	/* the exact text */
	struct buf *b = serialize(back);
	char head[64];
	snprintf(head, sizeof(head), "mailring-uidlist 1 V%u N4\n",
		 uidlist_uidvalidity(list));
	assert_int_equal(strncmp(buf_cstr(b), head, strlen(head)), 0);
	const char *rest = buf_cstr(b) + strlen(head);
	assert_int_equal(strncmp(rest, "1 a1\n2 b2\n3 c3\n# end 3 ", 23), 0);
	assert_int_equal(strlen(rest), 23 + 9);
	struct buf *b2 = serialize(list);
	assert_true(str_eq(buf_str(b), buf_str(b2)));
	buf_free(&b);
	buf_free(&b2);

	/* an empty list round-trips too */
	struct uidlist *empty = uidlist_new(7, 10);
	b = serialize(empty);
	struct uidlist_loader *l = uidlist_loader_new(10);
	assert_int_equal(uidlist_loader_feed(l, b->data, b->len), UIDLIST_OK);
	struct uidlist *e2 = NULL;
	assert_int_equal(uidlist_loader_finish(l, &e2, &error, NULL),
			 UIDLIST_OK);
	assert_int_equal(uidlist_count(e2), 0);
	assert_int_equal(uidlist_uidvalidity(e2), uidlist_uidvalidity(empty));
	uidlist_loader_free(&l);
	uidlist_free(&e2);
	uidlist_free(&empty);
	buf_free(&b);

	uidlist_free(&back);
	uidlist_free(&list);
	assert_null(list);
}

static void test_chunked(void **state)
{
	(void)state;
	struct uidlist *list = sample_list(40);
	struct buf *file = serialize(list);
	struct buf *whole = parse_events(file->data, file->len, file->len, 0);

	assert_non_null(strstr(buf_cstr(whole), "40 1700000039.M273P42"));
	assert_non_null(strstr(buf_cstr(whole), "=1 - 0")); /* DONE */
	for (size_t k = 0; k <= file->len; k++) {
		struct buf *ev = parse_events(file->data, file->len, k, 0);
		assert_true(str_eq(buf_str(ev), buf_str(whole)));
		buf_free(&ev);
	}
	for (size_t step = 1; step <= 7; step++) {
		struct buf *ev = parse_events(file->data, file->len, 0, step);
		assert_true(str_eq(buf_str(ev), buf_str(whole)));
		buf_free(&ev);
	}
	buf_free(&whole);
	buf_free(&file);
	uidlist_free(&list);
}

static void test_truncated_and_flipped(void **state)
{
	(void)state;
	struct uidlist *list = sample_list(12);
	struct buf *file = serialize(list);
	const char *error;

	for (size_t len = 0; len < file->len; len++) {
		struct uidlist_loader *l = uidlist_loader_new(100);
		struct uidlist *got = NULL;
		uidlist_loader_feed(l, file->data, len);
		assert_int_equal(uidlist_loader_finish(l, &got, &error, NULL),
				 UIDLIST_REBUILD);
		assert_null(got);
		assert_non_null(error);
		uidlist_loader_free(&l);
	}
	/* every single bit flip, at every byte, is caught */
	for (size_t i = 0; i < file->len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			struct uidlist_parser *p =
			    uidlist_parser_new(NULL, NULL, NULL);
			file->data[i] ^= (uint8_t)(1 << bit);
			uidlist_parser_feed(p, file->data, file->len);
			assert_int_not_equal(uidlist_parser_finish(p),
					     UIDLIST_PARSE_DONE);
			file->data[i] ^= (uint8_t)(1 << bit);
			uidlist_parser_free(&p);
		}
	}
	/* bytes after the trailer */
	struct uidlist_parser *p = uidlist_parser_new(NULL, NULL, NULL);
	assert_int_equal(uidlist_parser_feed(p, file->data, file->len),
			 UIDLIST_PARSE_DONE);
	assert_int_equal(uidlist_parser_feed(p, (const uint8_t *)"\n", 1),
			 UIDLIST_PARSE_CORRUPT);
	uint64_t off;
	assert_string_equal(uidlist_parser_error(p, &off),
			    "data after the trailer");
	assert_int_equal(off, file->len);
	/* sticky */
	assert_int_equal(uidlist_parser_finish(p), UIDLIST_PARSE_CORRUPT);
	uidlist_parser_free(&p);

	buf_free(&file);
	uidlist_free(&list);
}

static void test_bad_header(void **state)
{
	(void)state;
	const char *error;

	assert_int_equal(parse_text("mailring-uidlisx 1 V1 N1\n", &error),
			 UIDLIST_PARSE_CORRUPT);
	assert_string_equal(error, "bad magic");
	assert_int_equal(parse_text("garbage\n", &error),
			 UIDLIST_PARSE_CORRUPT);
	assert_int_equal(parse_text("mailring-uidlist 2 V1 N1\n", &error),
			 UIDLIST_PARSE_VERSION);
	assert_string_equal(error, "unknown version");
	assert_int_equal(parse_text("mailring-uidlist 2 whatever\n", &error),
			 UIDLIST_PARSE_VERSION);
	assert_int_equal(parse_text("mailring-uidlist 01 V1 N1\n", &error),
			 UIDLIST_PARSE_CORRUPT);
	static const char *bad[] = {
	    "mailring-uidlist 1 V0 N1\n",
	    "mailring-uidlist 1 V1 N0\n",
	    "mailring-uidlist 1 V1\n",
	    "mailring-uidlist 1 V1 N1 \n",
	    "mailring-uidlist 1 N1 V1\n",
	    "mailring-uidlist 1 V1 N2147483648\n",
	    "mailring-uidlist 1 V4294967296 N1\n",
	    "mailring-uidlist 1 V1 N1\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(parse_text(bad[i], &error),
				 UIDLIST_PARSE_CORRUPT);
		assert_string_equal(error, "bad header");
	}
	/* a valid empty file: CRC-32 of the header line */
	struct uidlist *list = uidlist_new(0, 5);
	struct buf *b = serialize(list);
	assert_int_equal(parse_text(buf_cstr(b), &error), UIDLIST_PARSE_DONE);
	buf_free(&b);
	uidlist_free(&list);
	/* the header rules reach uidlist_read's callers as REBUILD */
	struct uidlist_loader *l = uidlist_loader_new(10);
	struct uidlist *got = NULL;
	const char *v2 = "mailring-uidlist 2 V1 N1\n";
	assert_int_equal(
	    uidlist_loader_feed(l, (const uint8_t *)v2, strlen(v2)),
	    UIDLIST_REBUILD);
	assert_int_equal(uidlist_loader_finish(l, &got, &error, NULL),
			 UIDLIST_REBUILD);
	assert_string_equal(error, "unknown version");
	uidlist_loader_free(&l);
	assert_null(uidlist_loader_new(0));
}

static void test_records(void **state)
{
	(void)state;
	const char *error;

	assert_int_equal(
	    parse_text("mailring-uidlist 1 V5 N10\n3 a\n3 b\n", &error),
	    UIDLIST_PARSE_CORRUPT);
	assert_string_equal(error, "UIDs not increasing");
	assert_int_equal(
	    parse_text("mailring-uidlist 1 V5 N10\n5 a\n4 b\n", &error),
	    UIDLIST_PARSE_CORRUPT);
	assert_string_equal(error, "UIDs not increasing");
	assert_int_equal(
	    parse_text("mailring-uidlist 1 V5 N10\n10 a\n", &error),
	    UIDLIST_PARSE_CORRUPT);
	assert_string_equal(error, "UID not below UIDNEXT");
	static const char *bad[] = {
	    "0 a\n", "07 a\n", "-1 a\n", "+1 a\n", "1\n",
	    "1 \n",  " 1 a\n", "\n",     "x a\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[64];
		snprintf(text, sizeof(text), "mailring-uidlist 1 V5 N10\n%s",
			 bad[i]);
		assert_int_equal(parse_text(text, &error),
				 UIDLIST_PARSE_CORRUPT);
	}
	assert_int_equal(
	    parse_text("mailring-uidlist 1 V5 N10\n1 a b\n", &error),
	    UIDLIST_PARSE_CORRUPT);
	assert_string_equal(error, "bad base name");
	assert_int_equal(
	    parse_text("mailring-uidlist 1 V5 N10\n# end 0 0\n", &error),
	    UIDLIST_PARSE_CORRUPT);
	assert_string_equal(error, "bad trailer");
	assert_int_equal(parse_text("mailring-uidlist 1 V5 N10\n1 a\n"
				    "# end 0 00000000\n",
				    &error),
			 UIDLIST_PARSE_CORRUPT);
	assert_string_equal(error, "record count mismatch");
	assert_int_equal(parse_text("mailring-uidlist 1 V5 N10\n1 a\n"
				    "# end 1 00000000\n",
				    &error),
			 UIDLIST_PARSE_CORRUPT);
	assert_string_equal(error, "checksum mismatch");
	assert_int_equal(parse_text("mailring-uidlist 1 V5 N10\n1 a", &error),
			 UIDLIST_PARSE_CORRUPT);
	assert_string_equal(error, "incomplete last line");
	assert_int_equal(parse_text("mailring-uidlist 1 V5 N10\n1 a\n", &error),
			 UIDLIST_PARSE_CORRUPT);
	assert_string_equal(error, "no trailer (truncated)");

	/* the CRC is zlib's crc32() of the bytes before the trailer */
	assert_int_equal(parse_text("mailring-uidlist 1 V5 N3\n1 a\n2 b\n"
				    "# end 2 00edc93f\n",
				    &error),
			 UIDLIST_PARSE_DONE);

	/* a duplicate base name parses but is refused by the loader */
	struct uidlist_loader *l = uidlist_loader_new(10);
	struct uidlist *got = NULL;
	uint64_t off = 0;
	const char *dup = "mailring-uidlist 1 V5 N10\n1 a\n2 a\n";
	assert_int_equal(
	    uidlist_loader_feed(l, (const uint8_t *)dup, strlen(dup)),
	    UIDLIST_REBUILD);
	assert_int_equal(uidlist_loader_finish(l, &got, &error, &off),
			 UIDLIST_REBUILD);
	assert_string_equal(error, "duplicate base name");
	assert_int_equal(off, 30);
	assert_null(got);
	uidlist_loader_free(&l);
}

static void test_line_limit(void **state)
{
	(void)state;
	char big[UIDLIST_LINE_MAX + 32];
	const char *error;
	uint64_t off;

	/* a record line one byte over the limit */
	size_t name_len = UIDLIST_LINE_MAX - 2 - 1 + 1; /* "1 " + name + \n */
	memcpy(big, "1 ", 2);
	memset(big + 2, 'x', name_len);
	big[2 + name_len] = '\n';
	struct uidlist_parser *p = uidlist_parser_new(NULL, NULL, NULL);
	const char *hdr = "mailring-uidlist 1 V5 N10\n";
	assert_int_equal(
	    uidlist_parser_feed(p, (const uint8_t *)hdr, strlen(hdr)),
	    UIDLIST_PARSE_MORE);
	assert_int_equal(
	    uidlist_parser_feed(p, (const uint8_t *)big, 2 + name_len + 1),
	    UIDLIST_PARSE_CORRUPT);
	assert_string_equal(uidlist_parser_error(p, &off), "line too long");
	assert_int_equal(off, strlen(hdr));
	uidlist_parser_free(&p);

	/* 16 MB without a newline, in chunks: refused at the limit */
	p = uidlist_parser_new(NULL, NULL, NULL);
	uint8_t *junk = malloc(1 << 16);
	memset(junk, 'y', 1 << 16);
	enum uidlist_parse_result res = UIDLIST_PARSE_MORE;
	for (int i = 0; i < 256; i++)
		res = uidlist_parser_feed(p, junk, 1 << 16);
	assert_int_equal(res, UIDLIST_PARSE_CORRUPT);
	assert_string_equal(uidlist_parser_error(p, &off), "line too long");
	assert_int_equal(off, 0);
	free(junk);
	uidlist_parser_free(&p);

	/* the longest valid name fits the line limit */
	struct uidlist *list = uidlist_new(0, 10);
	memset(big, 'n', UIDLIST_NAME_MAX);
	big[UIDLIST_NAME_MAX] = '\0';
	append_ok(list, big, 1);
	assert_int_equal(uidlist_raise_uidnext(list, UIDLIST_UIDNEXT_MAX - 1),
			 0);
	big[0] = 'm';
	append_ok(list, big, UIDLIST_UIDNEXT_MAX - 1);
	struct buf *b = serialize(list);
	assert_int_equal(parse_text(buf_cstr(b), &error), UIDLIST_PARSE_DONE);
	buf_free(&b);
	uidlist_free(&list);
}

static int log_lines;
static char last_log[512];

static void log_capture(enum log_level level, const char *line, void *context)
{
	(void)level;
	(void)context;
	log_lines++;
	snprintf(last_log, sizeof(last_log), "%s", line);
}

static void test_renumber(void **state)
{
	(void)state;
	struct uidlist *list = uidlist_new(0, 100);
	const char *error = NULL;
	struct str names[] = {STR("b"), STR("c")};

	append_ok(list, "a", 1);
	append_ok(list, "b", 2);
	append_ok(list, "c", 3);
	assert_int_equal(uidlist_sync(list, names, 2, &error), UIDLIST_OK);
	assert_int_equal(uidlist_raise_uidnext(list, UIDLIST_UIDNEXT_MAX - 2),
			 0);
	assert_int_equal(uidlist_raise_uidnext(list, 5), 0); /* no lowering */
	assert_int_equal(uidlist_uidnext(list), UIDLIST_UIDNEXT_MAX - 2);
	assert_int_equal(uidlist_raise_uidnext(list, UIDLIST_UIDNEXT_MAX + 1),
			 -1);
	append_ok(list, "d", 0x7ffffffd);
	append_ok(list, "e", 0x7ffffffe); /* the highest UID */
	assert_int_equal(uidlist_uidnext(list), 0x7fffffff);

	/* the file holds it */
	struct buf *b = serialize(list);
	assert_int_equal(parse_text(buf_cstr(b), &error), UIDLIST_PARSE_DONE);
	buf_free(&b);

	uint32_t old_validity = uidlist_uidvalidity(list);
	log_lines = 0;
	log_set_callback(log_capture, NULL);
	append_ok(list, "f", 5);
	log_set_callback(NULL, NULL);
	assert_int_equal(log_lines, 1);
	assert_non_null(strstr(last_log, "uidlist: renumbered: messages=4"));
	assert_non_null(strstr(last_log, "old_uidnext=2147483647"));
	assert_true(uidlist_uidvalidity(list) > old_validity);
	assert_int_equal(uidlist_uidnext(list), 6);
	assert_uid(list, "b", 1);
	assert_uid(list, "c", 2);
	assert_uid(list, "d", 3);
	assert_uid(list, "e", 4);
	assert_uid(list, "f", 5);
	assert_uid(list, "a", 0);
	uidlist_free(&list);

	/* no greater UIDVALIDITY left */
	list = uidlist_new(UINT32_MAX - 1, 10);
	assert_int_equal(uidlist_uidvalidity(list), UINT32_MAX);
	log_set_callback(log_capture, NULL);
	assert_int_equal(uidlist_renumber(list, &error), UIDLIST_ERROR);
	log_set_callback(NULL, NULL);
	assert_non_null(error);
	uidlist_free(&list);
	assert_null(uidlist_new(UINT32_MAX, 10));
}

static void test_sync(void **state)
{
	(void)state;
	struct uidlist *list = uidlist_new(0, 6);
	const char *error = NULL;

	append_ok(list, "a", 1);
	append_ok(list, "b", 2);
	append_ok(list, "c", 3);
	append_ok(list, "d", 4);
	append_ok(list, "e", 5);
	uint32_t validity = uidlist_uidvalidity(list);

	struct str present[] = {STR("y"), STR("d"),        STR("b"),
				STR("x"), STR("bad/name"), STR("y")};
	log_set_callback(log_capture, NULL);
	assert_int_equal(uidlist_sync(list, present, 6, &error), UIDLIST_OK);
	log_set_callback(NULL, NULL);
	assert_int_equal(uidlist_count(list), 4);
	assert_int_equal(uidlist_uidvalidity(list), validity);
	assert_uid(list, "b", 2);
	assert_uid(list, "d", 4);
	assert_uid(list, "y", 6);
	assert_uid(list, "x", 7);
	assert_uid(list, "a", 0);
	assert_uid(list, "c", 0);
	assert_uid(list, "e", 0);
	assert_uid(list, "bad/name", 0);
	assert_false(uidlist_lookup_uid(list, 5, NULL));
	assert_int_equal(uidlist_uidnext(list), 8);
	uint32_t uid, prev = 0;
	for (uint32_t i = 0; uidlist_record_at(list, i, &uid, NULL); i++) {
		assert_true(uid > prev);
		prev = uid;
	}

	/* over the cap: refused, list unchanged */
	struct str many[] = {STR("b"),  STR("d"),  STR("y"), STR("x"),
			     STR("n1"), STR("n2"), STR("n3")};
	assert_int_equal(uidlist_sync(list, many, 7, &error), UIDLIST_LIMIT);
	assert_int_equal(uidlist_count(list), 4);
	assert_int_equal(uidlist_uidnext(list), 8);
	assert_uid(list, "n1", 0);
	assert_uid(list, "x", 7);

	/* everything expunged */
	assert_int_equal(uidlist_sync(list, NULL, 0, &error), UIDLIST_OK);
	assert_int_equal(uidlist_count(list), 0);
	assert_int_equal(uidlist_uidnext(list), 8);
	uidlist_free(&list);
}

static void test_rebuild(void **state)
{
	struct fixture *f = *state;
	struct uidlist *list = uidlist_new(0, 100), *known = NULL;
	struct uidlist_lock *lock = NULL;
	enum uidlist_status status;
	const char *error = NULL;

	append_ok(list, "m1", 1);
	append_ok(list, "m2", 2);
	append_ok(list, "m3", 3);
	assert_int_equal(uidlist_lock(f->dir, 1000, &lock, &error), UIDLIST_OK);
	assert_int_equal(uidlist_write(lock, list, &error), UIDLIST_OK);
	uidlist_unlock(&lock);
	assert_int_equal(uidlist_read(f->dir, 100, &known, &error), UIDLIST_OK);

	/* the Maildir as listed now, in readdir order */
	struct str dir[] = {STR("n2"), STR("m3"), STR("n1"), STR("m1")};
	struct uidlist *r =
	    uidlist_rebuild(known, 0, 100, dir, 4, &status, &error);
	assert_non_null(r);
	assert_int_equal(status, UIDLIST_OK);
	assert_int_equal(uidlist_uidvalidity(r), uidlist_uidvalidity(known));
	assert_uid(r, "m1", 1);
	assert_uid(r, "m3", 3);
	assert_uid(r, "n2", 4);
	assert_uid(r, "n1", 5);
	assert_uid(r, "m2", 0);
	assert_int_equal(uidlist_uidnext(r), 6);
	uidlist_free(&r);

	/* nothing known: a new, greater UIDVALIDITY, UIDs in the given order */
	uint32_t prev = uidlist_uidvalidity(known) + 1000;
	r = uidlist_rebuild(NULL, prev, 100, dir, 4, &status, &error);
	assert_non_null(r);
	assert_int_equal(uidlist_uidvalidity(r), prev + 1);
	assert_uid(r, "n2", 1);
	assert_uid(r, "m3", 2);
	assert_uid(r, "n1", 3);
	assert_uid(r, "m1", 4);
	uidlist_free(&r);

	/* the cap holds */
	r = uidlist_rebuild(known, 0, 3, dir, 4, &status, &error);
	assert_null(r);
	assert_int_equal(status, UIDLIST_LIMIT);

	/* a corrupt file on disk: read says rebuild */
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", f->dir, UIDLIST_FILE_NAME);
	FILE *fp = fopen(path, "r+");
	assert_non_null(fp);
	fseek(fp, 30, SEEK_SET);
	fputc('#', fp);
	fclose(fp);
	struct uidlist *bad = NULL;
	log_set_callback(log_capture, NULL);
	assert_int_equal(uidlist_read(f->dir, 100, &bad, &error),
			 UIDLIST_REBUILD);
	log_set_callback(NULL, NULL);
	assert_null(bad);
	assert_non_null(strstr(last_log, "unusable file"));

	uidlist_free(&known);
	uidlist_free(&list);
}

static void test_lock(void **state)
{
	struct fixture *f = *state;
	struct uidlist_lock *lock = NULL, *lock2 = NULL;
	const char *error = NULL;
	int to_parent[2], to_child[2];
	char c;

	assert_int_equal(pipe(to_parent), 0);
	assert_int_equal(pipe(to_child), 0);
	pid_t pid = fork();
	assert_true(pid != -1);
	if (pid == 0) {
		const char *err;
		if (uidlist_lock(f->dir, 1000, &lock, &err) != UIDLIST_OK)
			_exit(1);
		if (write(to_parent[1], "L", 1) != 1)
			_exit(2);
		if (read(to_child[0], &c, 1) != 1) /* hold until told */
			_exit(3);
		uidlist_unlock(&lock);
		if (write(to_parent[1], "U", 1) != 1)
			_exit(4);
		_exit(0);
	}
	assert_int_equal(read(to_parent[0], &c, 1), 1);
	assert_int_equal(c, 'L');

	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(uidlist_lock(f->dir, 200, &lock, &error),
			 UIDLIST_LOCK_TIMEOUT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long ms = (t1.tv_sec - t0.tv_sec) * 1000 +
		  (t1.tv_nsec - t0.tv_nsec) / 1000000;
	assert_true(ms >= 190 && ms < 2000);
	assert_null(lock);
	assert_non_null(strstr(error, "timed out after 200 ms"));
	char holder[32];
	snprintf(holder, sizeof(holder), "pid=%ld ", (long)pid);
	assert_non_null(strstr(error, holder));

	/* released while we wait: we get it */
	assert_int_equal(write(to_child[1], "x", 1), 1);
	assert_int_equal(uidlist_lock(f->dir, 5000, &lock, &error), UIDLIST_OK);
	assert_int_equal(read(to_parent[0], &c, 1), 1);
	assert_int_equal(c, 'U');
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

	/* a second lock in the same process is refused too (OFD lock) */
	assert_int_equal(uidlist_lock(f->dir, 50, &lock2, &error),
			 UIDLIST_LOCK_TIMEOUT);
	uidlist_unlock(&lock);
	assert_int_equal(uidlist_lock(f->dir, 50, &lock2, &error), UIDLIST_OK);
	uidlist_unlock(&lock2);
	uidlist_unlock(&lock2); /* NULL: no-op */

	assert_int_equal(uidlist_lock("/nonexistent/dir", 50, &lock, &error),
			 UIDLIST_ERROR);
	assert_non_null(strstr(error, "No such file"));
	close(to_parent[0]);
	close(to_parent[1]);
	close(to_child[0]);
	close(to_child[1]);
}

static void test_large(void **state)
{
	struct fixture *f = *state;
	const uint32_t n = 100000;
	struct uidlist *list = uidlist_new(0, n), *back = NULL;
	struct uidlist_lock *lock = NULL;
	const char *error = NULL;
	size_t names_len = 0;
	char name[64];

	for (uint32_t i = 0; i < n; i++) {
		int len =
		    snprintf(name, sizeof(name), "1700%06u.M%uP9.h", i, i);
		names_len += (size_t)len;
		append_ok(list, name, i + 1);
	}
	assert_int_equal(
	    uidlist_append(list, STR("one.more"), &(uint32_t){0}, &error),
	    UIDLIST_LIMIT);
	/* memory proportional to the records: records array (at most the
	 * cap), names at most doubled, hash at most 4 slots a record */
	size_t used = uidlist_memory_used(list);
	size_t bound = (size_t)n * (16 + 4 * 4) + 2 * names_len + 4096;
	assert_true(used >= names_len);
	assert_true(used <= bound);

	assert_int_equal(uidlist_lock(f->dir, 1000, &lock, &error), UIDLIST_OK);
	assert_int_equal(uidlist_write(lock, list, &error), UIDLIST_OK);
	uidlist_unlock(&lock);
	assert_int_equal(uidlist_read(f->dir, n, &back, &error), UIDLIST_OK);
	assert_int_equal(uidlist_count(back), n);
	assert_true(uidlist_memory_used(back) <= bound);
	for (uint32_t i = 0; i < n; i += 997) {
		snprintf(name, sizeof(name), "1700%06u.M%uP9.h", i, i);
		assert_uid(back, name, i + 1);
	}
	uidlist_free(&back);

	/* a file with more records than the cap */
	log_set_callback(log_capture, NULL);
	assert_int_equal(uidlist_read(f->dir, n - 1, &back, &error),
			 UIDLIST_LIMIT);
	log_set_callback(NULL, NULL);
	assert_null(back);
	assert_non_null(strstr(error, "more than 99999"));

	/* half expunged: sync compacts */
	struct str *keep = calloc(n / 2, sizeof(*keep));
	char *store = malloc((size_t)n / 2 * 32);
	for (uint32_t i = 0; i < n / 2; i++) {
		char *p = store + (size_t)i * 32;
		int len = snprintf(p, 32, "1700%06u.M%uP9.h", i * 2, i * 2);
		keep[i] = str_from(p, (size_t)len);
	}
	assert_int_equal(uidlist_sync(list, keep, n / 2, &error), UIDLIST_OK);
	assert_int_equal(uidlist_count(list), n / 2);
	assert_true(uidlist_memory_used(list) <= bound / 2 + 4096);
	assert_uid(list, "1700000002.M2P9.h", 3);
	assert_uid(list, "1700000003.M3P9.h", 0);
	free(store);
	free(keep);
	uidlist_free(&list);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_uidvalidity_next),
	    cmocka_unit_test(test_names),
	    cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
	    cmocka_unit_test(test_chunked),
	    cmocka_unit_test(test_truncated_and_flipped),
	    cmocka_unit_test(test_bad_header),
	    cmocka_unit_test(test_records),
	    cmocka_unit_test(test_line_limit),
	    cmocka_unit_test(test_renumber),
	    cmocka_unit_test(test_sync),
	    cmocka_unit_test_setup_teardown(test_rebuild, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_large, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
