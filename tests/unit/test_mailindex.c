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

#include "backend/mailindex.h"
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
	strcpy(f->dir, "/tmp/test_mailindex.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	static const char *names[] = {MAILINDEX_FILE_NAME, MAILINDEX_LOG_NAME,
				      MAILINDEX_LOCK_NAME, "mailring-index.tmp",
				      "mailring-index.log.tmp"};
	char path[128];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", f->dir, names[i]);
		unlink(path);
	}
	assert_int_equal(rmdir(f->dir), 0);
	free(f);
	return 0;
}

static void path_of(const struct fixture *f, const char *name, char *out,
		    size_t size)
{
	assert_true((size_t)snprintf(out, size, "%s/%s", f->dir, name) < size);
}

static size_t read_bytes(const struct fixture *f, const char *name,
			 uint8_t *buf, size_t size)
{
	char path[128];
	path_of(f, name, path, sizeof(path));
	int fd = open(path, O_RDONLY);
	assert_true(fd != -1);
	ssize_t n = read(fd, buf, size);
	assert_true(n >= 0 && (size_t)n < size);
	close(fd);
	return (size_t)n;
}

static void write_bytes(const struct fixture *f, const char *name,
			const uint8_t *buf, size_t len)
{
	char path[128];
	path_of(f, name, path, sizeof(path));
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd != -1);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

static void append_bytes(const struct fixture *f, const char *name,
			 const uint8_t *buf, size_t len)
{
	char path[128];
	path_of(f, name, path, sizeof(path));
	int fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd != -1);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

static off_t file_size(const struct fixture *f, const char *name)
{
	char path[128];
	struct stat st;
	path_of(f, name, path, sizeof(path));
	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

static struct mailindex_record mkrec(uint32_t uid, uint8_t flags,
				     uint32_t keywords)
{
	struct mailindex_record r = {
	    .uid = uid,
	    .flags = flags,
	    .keywords = keywords,
	    .modseq = uid,
	    .size = 1000 + uid,
	    .date = 1700000000 + (int64_t)uid,
	};
	return r;
}

static void assert_rec_eq(const struct mailindex_record *a,
			  const struct mailindex_record *b)
{
	assert_int_equal(a->uid, b->uid);
	assert_int_equal(a->flags, b->flags);
	assert_int_equal(a->keywords, b->keywords);
	assert_int_equal(a->modseq, b->modseq);
	assert_int_equal(a->size, b->size);
	assert_int_equal(a->date, b->date);
}

/* Creates the index with records uid 2, 5, 9 (uidnext 10). */
static void build3(const struct fixture *f, uint64_t rotate)
{
	struct mailindex_record recs[3] = {
	    mkrec(2, MAILINDEX_FLAG_SEEN, 0), mkrec(5, 0, 1u << 3),
	    mkrec(9, MAILINDEX_FLAG_FLAGGED | MAILINDEX_FLAG_DRAFT,
		  0x3ffffffu)};
	struct mailindex_lock *lock = NULL;
	struct mailindex *idx = NULL;
	const char *error = NULL;

	assert_int_equal(mailindex_lock(f->dir, 1000, &lock, &error),
			 MAILINDEX_OK);
	assert_int_equal(mailindex_rebuild_from(lock, 777, 10, recs, 3, 100,
						rotate, &idx, &error),
			 MAILINDEX_OK);
	assert_int_equal(mailindex_count(idx), 3);
	mailindex_free(&idx);
	mailindex_unlock(&lock);
}

static enum mailindex_status try_open(const struct fixture *f,
				      struct mailindex **idx)
{
	const char *error = NULL;
	enum mailindex_status st = mailindex_open(f->dir, 100, 0, idx, &error);
	if (st != MAILINDEX_OK)
		assert_non_null(error);
	return st;
}

/* ---- encoding ----------------------------------------------------------- */

static void test_record_roundtrip(void **state)
{
	(void)state;
	struct mailindex_record in = {
	    .uid = 0x7ffffffe,
	    .flags = MAILINDEX_FLAGS_MASK,
	    .keywords = MAILINDEX_KEYWORDS_MASK,
	    .modseq = UINT64_MAX,
	    .size = 0x0123456789abcdefULL,
	    .date = -5,
	};
	struct mailindex_record out;
	uint8_t buf[MAILINDEX_RECORD_SIZE];
	const char *error = NULL;

	mailindex_record_encode(&in, buf);
	assert_int_equal(buf[0], 0xfe); /* little-endian */
	assert_int_equal(buf[3], 0x7f);
	assert_int_equal(mailindex_record_decode(buf, &out, &error), 0);
	assert_rec_eq(&in, &out);

	uint8_t bad[MAILINDEX_RECORD_SIZE];
	memcpy(bad, buf, sizeof(bad));
	bad[10] = 1; /* reserved */
	assert_int_equal(mailindex_record_decode(bad, &out, &error), -1);
	memcpy(bad, buf, sizeof(bad));
	bad[8] = 0x20; /* unknown flag */
	assert_int_equal(mailindex_record_decode(bad, &out, &error), -1);
	memcpy(bad, buf, sizeof(bad));
	bad[7] = 0x04; /* keyword bit 26 */
	assert_int_equal(mailindex_record_decode(bad, &out, &error), -1);
	memcpy(bad, buf, sizeof(bad));
	memset(bad, 0, 4); /* uid 0 */
	assert_int_equal(mailindex_record_decode(bad, &out, &error), -1);
	memcpy(bad, buf, sizeof(bad));
	bad[3] = 0x80; /* uid >= 2^31 */
	assert_int_equal(mailindex_record_decode(bad, &out, &error), -1);
}

/* ---- log parser -------------------------------------------------------- */

struct collect {
	struct mailindex_log_entry entries[16];
	uint64_t ends[16];
	size_t n;
	struct mailindex_log_header hdr;
};

static int collect_header(const struct mailindex_log_header *hdr, void *c)
{
	((struct collect *)c)->hdr = *hdr;
	return 0;
}

static int collect_entry(const struct mailindex_log_entry *e, uint64_t end,
			 void *context)
{
	struct collect *c = context;
	assert_true(c->n < 16);
	c->ends[c->n] = end;
	c->entries[c->n++] = *e;
	return 0;
}

static void make_log_header(uint8_t *out, uint32_t seq, uint32_t uidvalidity);

/* CRC-32 for hand-made headers. */
static uint32_t crc32_ref(const uint8_t *p, size_t len)
{
	uint32_t crc = 0xffffffffu;
	for (size_t i = 0; i < len; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
	}
	return ~crc;
}

static void make_log_header(uint8_t *out, uint32_t seq, uint32_t uidvalidity)
{
	memcpy(out, "MRIDXLOG", 8);
	uint32_t v[3] = {MAILINDEX_LOG_VERSION, seq, uidvalidity};
	for (int i = 0; i < 3; i++)
		for (int b = 0; b < 4; b++)
			out[8 + 4 * i + b] = (uint8_t)(v[i] >> (8 * b));
	uint32_t crc = crc32_ref(out, 20);
	for (int b = 0; b < 4; b++)
		out[20 + b] = (uint8_t)(crc >> (8 * b));
}

static enum mailindex_parse_result parse(const uint8_t *data, size_t len,
					 size_t chunk, struct collect *c,
					 uint64_t *err_off, uint64_t *valid_end)
{
	struct mailindex_log_parser *p =
	    mailindex_log_parser_new(collect_header, collect_entry, c);
	enum mailindex_parse_result res = MAILINDEX_PARSE_MORE;
	for (size_t pos = 0; pos < len && res == MAILINDEX_PARSE_MORE;) {
		size_t n = chunk < len - pos ? chunk : len - pos;
		res = mailindex_log_parser_feed(p, data + pos, n);
		pos += n;
	}
	res = mailindex_log_parser_finish(p);
	const char *err = mailindex_log_parser_error(p, err_off);
	assert_true((res == MAILINDEX_PARSE_DONE) == (err == NULL));
	if (valid_end != NULL)
		*valid_end = mailindex_log_parser_valid_end(p, NULL);
	mailindex_log_parser_free(&p);
	assert_null(p);
	return res;
}

static size_t sample_log(uint8_t *buf)
{
	struct mailindex_log_entry e[3] = {
	    {.type = MAILINDEX_LOG_APPEND, .rec = mkrec(3, 1, 2)},
	    {.type = MAILINDEX_LOG_FLAGS,
	     .rec = {.uid = 3, .flags = 4, .keywords = 9, .modseq = 4}},
	    {.type = MAILINDEX_LOG_EXPUNGE, .rec = {.uid = 3, .modseq = 5}},
	};
	size_t len = MAILINDEX_LOG_HEADER_SIZE;
	make_log_header(buf, 7, 777);
	for (int i = 0; i < 3; i++)
		len += mailindex_log_entry_encode(&e[i], buf + len);
	return len;
}

static void test_log_parser(void **state)
{
	(void)state;
	uint8_t buf[256];
	size_t len = sample_log(buf);
	uint64_t off, end;

	for (size_t chunk = 1; chunk <= len; chunk++) {
		struct collect c = {0};
		assert_int_equal(parse(buf, len, chunk, &c, &off, &end),
				 MAILINDEX_PARSE_DONE);
		assert_int_equal(c.hdr.seq, 7);
		assert_int_equal(c.hdr.uidvalidity, 777);
		assert_int_equal(c.n, 3);
		assert_int_equal(end, len);
		assert_int_equal(c.ends[2], len);
		assert_int_equal(c.entries[0].type, MAILINDEX_LOG_APPEND);
		struct mailindex_record r3 = mkrec(3, 1, 2);
		assert_rec_eq(&c.entries[0].rec, &r3);
		assert_int_equal(c.entries[1].rec.keywords, 9);
		assert_int_equal(c.entries[2].type, MAILINDEX_LOG_EXPUNGE);
		assert_int_equal(c.entries[2].rec.modseq, 5);
	}

	/* every truncation: header cut → corrupt; entry cut → torn */
	for (size_t cut = 0; cut < len; cut++) {
		struct collect c = {0};
		enum mailindex_parse_result res =
		    parse(buf, cut, 3, &c, &off, &end);
		if (cut < MAILINDEX_LOG_HEADER_SIZE) {
			assert_int_equal(res, MAILINDEX_PARSE_CORRUPT);
		} else {
			assert_int_equal(res, MAILINDEX_PARSE_DONE);
			assert_true(end <= cut);
			assert_true(c.n < 3);
		}
	}

	/* bad CRC on the last entry: torn; on an earlier one: corrupt */
	uint8_t bad[256];
	memcpy(bad, buf, len);
	bad[len - 1] ^= 1;
	struct collect c = {0};
	assert_int_equal(parse(bad, len, 5, &c, &off, &end),
			 MAILINDEX_PARSE_DONE);
	assert_int_equal(c.n, 2);
	assert_int_equal(end, c.ends[1]);
	memcpy(bad, buf, len);
	bad[MAILINDEX_LOG_HEADER_SIZE + 10] ^= 1;
	memset(&c, 0, sizeof(c));
	assert_int_equal(parse(bad, len, 5, &c, &off, NULL),
			 MAILINDEX_PARSE_CORRUPT);
	assert_int_equal(off, MAILINDEX_LOG_HEADER_SIZE);
	assert_int_equal(c.n, 0);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int b = 0; b < 4; b++)
		p[b] = (uint8_t)(v >> (8 * b));
}

static void test_log_parser_limits(void **state)
{
	(void)state;
	uint8_t buf[8192];
	uint64_t off;
	struct collect c = {0};
	const char *err;
	size_t h = MAILINDEX_LOG_HEADER_SIZE;

	/* length over the cap: corrupt as soon as the length is read */
	make_log_header(buf, 1, 1);
	put32(buf + h, MAILINDEX_LOG_ENTRY_MAX + 1);
	put32(buf + h + 4, 0);
	struct mailindex_log_parser *p =
	    mailindex_log_parser_new(NULL, NULL, NULL);
	assert_int_equal(mailindex_log_parser_feed(p, buf, h + 8),
			 MAILINDEX_PARSE_CORRUPT);
	err = mailindex_log_parser_error(p, &off);
	assert_string_equal(err, "entry length over the cap");
	assert_int_equal(off, h);
	/* final: later feeds give the same */
	assert_int_equal(mailindex_log_parser_feed(p, buf, 1),
			 MAILINDEX_PARSE_CORRUPT);
	assert_int_equal(mailindex_log_parser_finish(p),
			 MAILINDEX_PARSE_CORRUPT);
	assert_true(mailindex_log_parser_memory(p) <=
		    MAILINDEX_LOG_ENTRY_MAX + 256);
	mailindex_log_parser_free(&p);

	/* the cap itself is a legal length; it fails on its type instead */
	memset(buf + h, 0, sizeof(buf) - h);
	put32(buf + h, MAILINDEX_LOG_ENTRY_MAX);
	buf[h + 8] = MAILINDEX_LOG_APPEND;
	uint32_t crc = crc32_ref(buf + h, 4);
	{
		/* crc over length bytes then body: recompute by hand */
		uint8_t tmp[4 + MAILINDEX_LOG_ENTRY_MAX];
		memcpy(tmp, buf + h, 4);
		memcpy(tmp + 4, buf + h + 8, MAILINDEX_LOG_ENTRY_MAX);
		crc = crc32_ref(tmp, sizeof(tmp));
	}
	put32(buf + h + 4, crc);
	assert_int_equal(
	    parse(buf, h + 8 + MAILINDEX_LOG_ENTRY_MAX, 100, &c, &off, NULL),
	    MAILINDEX_PARSE_CORRUPT);

	/* length 0 */
	put32(buf + h, 0);
	assert_int_equal(parse(buf, h + 8, 1, &c, &off, NULL),
			 MAILINDEX_PARSE_CORRUPT);

	/* unknown type, with a good CRC */
	uint8_t e[16] = {0};
	put32(e, 1);
	e[8] = 9;
	uint8_t tmp[5] = {1, 0, 0, 0, 9};
	put32(e + 4, crc32_ref(tmp, 5));
	memcpy(buf + h, e, 9);
	assert_int_equal(parse(buf, h + 9, 4, &c, &off, NULL),
			 MAILINDEX_PARSE_CORRUPT);

	/* unknown version (good CRC) and bad magic */
	make_log_header(buf, 1, 1);
	buf[8] = 2;
	put32(buf + 20, crc32_ref(buf, 20));
	assert_int_equal(parse(buf, h, 7, &c, &off, NULL),
			 MAILINDEX_PARSE_VERSION);
	make_log_header(buf, 1, 1);
	buf[0] = 'X';
	assert_int_equal(parse(buf, h, 7, &c, &off, NULL),
			 MAILINDEX_PARSE_CORRUPT);
	/* seq 0 */
	make_log_header(buf, 0, 1);
	assert_int_equal(parse(buf, h, 7, &c, &off, NULL),
			 MAILINDEX_PARSE_CORRUPT);
}

/* ---- index file --------------------------------------------------------- */

static void test_index_roundtrip(void **state)
{
	struct fixture *f = *state;
	struct mailindex *idx = NULL;
	struct mailindex_record r, want;

	assert_int_equal(try_open(f, &idx), MAILINDEX_NOT_FOUND);
	assert_null(idx);
	build3(f, 0);
	assert_int_equal(file_size(f, MAILINDEX_FILE_NAME),
			 MAILINDEX_HEADER_SIZE + 3 * MAILINDEX_RECORD_SIZE + 4);
	assert_int_equal(file_size(f, MAILINDEX_LOG_NAME),
			 MAILINDEX_LOG_HEADER_SIZE);
	assert_int_equal(try_open(f, &idx), MAILINDEX_OK);
	assert_int_equal(mailindex_uidvalidity(idx), 777);
	assert_int_equal(mailindex_uidnext(idx), 10);
	assert_int_equal(mailindex_highest_modseq(idx), 9);
	assert_int_equal(mailindex_count(idx), 3);
	assert_int_equal(mailindex_log_seq(idx), 1);
	assert_int_equal(mailindex_lookup_uid(idx, 5, &r), 2);
	want = mkrec(5, 0, 1u << 3);
	assert_rec_eq(&r, &want);
	assert_int_equal(mailindex_lookup_uid(idx, 4, &r), 0);
	assert_int_equal(mailindex_lookup_uid(idx, 10, NULL), 0);
	assert_true(mailindex_lookup_seq(idx, 3, &r));
	assert_int_equal(r.uid, 9);
	assert_int_equal(r.keywords, 0x3ffffffu);
	assert_false(mailindex_lookup_seq(idx, 0, &r));
	assert_false(mailindex_lookup_seq(idx, 4, &r));
	mailindex_free(&idx);
	mailindex_free(&idx); /* NULL: no-op */

	/* the record cap */
	const char *error = NULL;
	assert_int_equal(mailindex_open(f->dir, 2, 0, &idx, &error),
			 MAILINDEX_LIMIT);
	assert_null(idx);
	assert_int_equal(mailindex_open(f->dir, 0, 0, &idx, &error),
			 MAILINDEX_ERROR);
}

static void test_index_truncated_and_flipped(void **state)
{
	struct fixture *f = *state;
	struct mailindex *idx = NULL;
	uint8_t good[512], bad[512];

	build3(f, 0);
	size_t len = read_bytes(f, MAILINDEX_FILE_NAME, good, sizeof(good));
	log_lines = 0;
	for (size_t cut = 0; cut < len; cut++) {
		write_bytes(f, MAILINDEX_FILE_NAME, good, cut);
		assert_int_equal(try_open(f, &idx), MAILINDEX_REBUILD);
		assert_null(idx);
	}
	assert_int_equal(log_lines, (int)len); /* each is logged */
	for (size_t i = 0; i < len * 8; i++) {
		memcpy(bad, good, len);
		bad[i / 8] ^= (uint8_t)(1u << (i % 8));
		write_bytes(f, MAILINDEX_FILE_NAME, bad, len);
		assert_int_equal(try_open(f, &idx), MAILINDEX_REBUILD);
	}
	/* an extra byte */
	memcpy(bad, good, len);
	bad[len] = 0;
	write_bytes(f, MAILINDEX_FILE_NAME, bad, len + 1);
	assert_int_equal(try_open(f, &idx), MAILINDEX_REBUILD);
	write_bytes(f, MAILINDEX_FILE_NAME, good, len);
	assert_int_equal(try_open(f, &idx), MAILINDEX_OK);
	mailindex_free(&idx);
}

/* ---- writers and the log ----------------------------------------------- */

static void writer(const struct fixture *f, uint64_t rotate,
		   struct mailindex_lock **lock, struct mailindex **idx)
{
	const char *error = NULL;
	assert_int_equal(mailindex_lock(f->dir, 1000, lock, &error),
			 MAILINDEX_OK);
	assert_int_equal(mailindex_open(f->dir, 100, rotate, idx, &error),
			 MAILINDEX_OK);
}

static void test_log_append_reopen(void **state)
{
	struct fixture *f = *state;
	struct mailindex_lock *lock = NULL;
	struct mailindex *idx = NULL, *r = NULL;
	const char *error = NULL;
	uint64_t m1 = 0, m2 = 0, m3 = 0, m4 = 0;
	struct mailindex_record rec = mkrec(12, 0, 0), got;

	build3(f, 0);
	writer(f, 0, &lock, &idx);
	assert_int_equal(mailindex_append(idx, lock, &rec, &m1, &error),
			 MAILINDEX_OK);
	assert_int_equal(m1, 10);
	assert_int_equal(mailindex_set_flags(idx, lock, 5,
					     MAILINDEX_FLAG_ANSWERED, 7, &m2,
					     &error),
			 MAILINDEX_OK);
	assert_int_equal(mailindex_expunge(idx, lock, 2, &m3, &error),
			 MAILINDEX_OK);
	rec.uid = 20;
	assert_int_equal(mailindex_append(idx, lock, &rec, &m4, &error),
			 MAILINDEX_OK);
	assert_true(m1 < m2 && m2 < m3 && m3 < m4);
	assert_int_equal(mailindex_uidnext(idx), 21);

	/* a reader sees it all from the log */
	assert_int_equal(try_open(f, &r), MAILINDEX_OK);
	assert_int_equal(mailindex_count(r), 4);
	assert_int_equal(mailindex_highest_modseq(r), m4);
	assert_int_equal(mailindex_uidnext(r), 21);
	assert_int_equal(mailindex_lookup_uid(r, 2, NULL), 0);
	assert_int_equal(mailindex_lookup_uid(r, 5, &got), 1); /* renumbered */
	assert_int_equal(got.flags, MAILINDEX_FLAG_ANSWERED);
	assert_int_equal(got.keywords, 7);
	assert_int_equal(got.modseq, m2);
	assert_int_equal(mailindex_lookup_uid(r, 12, &got), 3);
	assert_int_equal(got.modseq, m1);
	assert_int_equal(got.size, 1012);
	assert_int_equal(mailindex_lookup_uid(r, 20, NULL), 4);
	assert_int_equal(mailindex_log_end(r), mailindex_log_end(idx));
	mailindex_free(&r);

	/* compaction keeps everything */
	assert_int_equal(mailindex_compact(idx, lock, &error), MAILINDEX_OK);
	assert_int_equal(file_size(f, MAILINDEX_LOG_NAME),
			 MAILINDEX_LOG_HEADER_SIZE);
	assert_int_equal(try_open(f, &r), MAILINDEX_OK);
	assert_int_equal(mailindex_count(r), 4);
	assert_int_equal(mailindex_highest_modseq(r), m4);
	assert_int_equal(mailindex_log_seq(r), 2);
	mailindex_free(&r);

	/* bad arguments and errors */
	rec.uid = 15; /* below UIDNEXT */
	assert_int_equal(mailindex_append(idx, lock, &rec, NULL, &error),
			 MAILINDEX_ERROR);
	rec.uid = MAILINDEX_UIDNEXT_MAX;
	assert_int_equal(mailindex_append(idx, lock, &rec, NULL, &error),
			 MAILINDEX_ERROR);
	assert_int_equal(mailindex_set_flags(idx, lock, 2, 0, 0, NULL, &error),
			 MAILINDEX_NOT_FOUND);
	assert_int_equal(
	    mailindex_set_flags(idx, lock, 5, 0x40, 0, NULL, &error),
	    MAILINDEX_ERROR);
	assert_int_equal(mailindex_expunge(idx, lock, 3, NULL, &error),
			 MAILINDEX_NOT_FOUND);
	assert_int_equal(mailindex_expunge(idx, NULL, 5, NULL, &error),
			 MAILINDEX_ERROR);
	assert_int_equal(mailindex_highest_modseq(idx), m4);
	mailindex_free(&idx);
	mailindex_unlock(&lock);
	mailindex_unlock(&lock);
}

static void test_expunge_renumbers(void **state)
{
	struct fixture *f = *state;
	struct mailindex_lock *lock = NULL;
	struct mailindex *idx = NULL;
	const char *error = NULL;
	struct mailindex_record r;
	uint64_t last = 0, m;

	build3(f, 0);
	writer(f, 0, &lock, &idx);
	for (uint32_t uid = 10; uid < 20; uid++) {
		r = mkrec(uid, 0, 0);
		assert_int_equal(mailindex_append(idx, lock, &r, &m, &error),
				 MAILINDEX_OK);
		assert_true(m > last);
		last = m;
	}
	/* seqs now: 2 5 9 10..19 → expunge 5 and 10 */
	assert_int_equal(mailindex_lookup_uid(idx, 11, NULL), 5);
	assert_int_equal(mailindex_expunge(idx, lock, 5, &m, &error),
			 MAILINDEX_OK);
	assert_true(m > last);
	last = m;
	assert_int_equal(mailindex_expunge(idx, lock, 10, &m, &error),
			 MAILINDEX_OK);
	assert_true(m > last);
	assert_int_equal(mailindex_count(idx), 11);
	assert_int_equal(mailindex_lookup_uid(idx, 11, NULL), 3);
	assert_true(mailindex_lookup_seq(idx, 2, &r));
	assert_int_equal(r.uid, 9);
	assert_true(mailindex_lookup_seq(idx, 11, &r));
	assert_int_equal(r.uid, 19);
	/* expunging the last and the first */
	assert_int_equal(mailindex_expunge(idx, lock, 19, NULL, &error),
			 MAILINDEX_OK);
	assert_int_equal(mailindex_expunge(idx, lock, 2, NULL, &error),
			 MAILINDEX_OK);
	assert_true(mailindex_lookup_seq(idx, 1, &r));
	assert_int_equal(r.uid, 9);
	assert_int_equal(mailindex_count(idx), 9);
	/* UIDNEXT does not go down: 19 may not come back */
	assert_int_equal(mailindex_uidnext(idx), 20);
	mailindex_free(&idx);
	mailindex_unlock(&lock);
}

static void test_torn_tail(void **state)
{
	struct fixture *f = *state;
	struct mailindex_lock *lock = NULL;
	struct mailindex *idx = NULL;
	const char *error = NULL;
	uint8_t e[MAILINDEX_LOG_ENTRY_ENCODED_MAX];
	struct mailindex_record rec;

	build3(f, 0);
	writer(f, 0, &lock, &idx);
	assert_int_equal(mailindex_set_flags(idx, lock, 9, 0, 0, NULL, &error),
			 MAILINDEX_OK);
	mailindex_free(&idx);
	mailindex_unlock(&lock);
	off_t good = file_size(f, MAILINDEX_LOG_NAME);

	/* a half-written append */
	struct mailindex_log_entry torn = {.type = MAILINDEX_LOG_APPEND,
					   .rec = mkrec(30, 0, 0)};
	torn.rec.modseq = 11;
	size_t n = mailindex_log_entry_encode(&torn, e);
	append_bytes(f, MAILINDEX_LOG_NAME, e, n - 7);
	assert_int_equal(try_open(f, &idx), MAILINDEX_OK);
	assert_int_equal(mailindex_count(idx), 3);
	assert_int_equal(mailindex_highest_modseq(idx), 10);
	assert_int_equal(mailindex_log_end(idx), (uint64_t)good);
	mailindex_free(&idx);

	/* a whole entry with a bad CRC at the end: torn too */
	write_bytes(f, "x", e, 0);
	{
		char p[128];
		path_of(f, MAILINDEX_LOG_NAME, p, sizeof(p));
		assert_int_equal(truncate(p, good), 0);
		path_of(f, "x", p, sizeof(p));
		unlink(p);
	}
	e[n - 1] ^= 0x55;
	append_bytes(f, MAILINDEX_LOG_NAME, e, n);
	assert_int_equal(try_open(f, &idx), MAILINDEX_OK);
	assert_int_equal(mailindex_count(idx), 3);
	mailindex_free(&idx);

	/* the next writer cuts it and appends */
	writer(f, 0, &lock, &idx);
	log_lines = 0;
	assert_int_equal(mailindex_set_flags(idx, lock, 5, 1, 0, NULL, &error),
			 MAILINDEX_OK);
	assert_int_equal(log_lines, 1);
	assert_non_null(strstr(last_log, "torn"));
	assert_int_equal(file_size(f, MAILINDEX_LOG_NAME), good + 8 + 1 + 20);
	mailindex_free(&idx);
	mailindex_unlock(&lock);
	assert_int_equal(try_open(f, &idx), MAILINDEX_OK);
	assert_int_equal(mailindex_lookup_uid(idx, 5, &rec), 2);
	assert_int_equal(rec.flags, 1);
	assert_int_equal(rec.modseq, 11);
	mailindex_free(&idx);

	/* garbage after a good entry is not a torn write: rebuild */
	uint8_t junk[64];
	memset(junk, 0xab, sizeof(junk));
	append_bytes(f, MAILINDEX_LOG_NAME, junk, sizeof(junk));
	assert_int_equal(try_open(f, &idx), MAILINDEX_REBUILD);
}

static void test_log_mismatch(void **state)
{
	struct fixture *f = *state;
	struct mailindex_lock *lock = NULL;
	struct mailindex *idx = NULL;
	const char *error = NULL;
	uint8_t old_log[256], hdr[MAILINDEX_LOG_HEADER_SIZE];

	build3(f, 0);
	writer(f, 0, &lock, &idx);
	assert_int_equal(mailindex_set_flags(idx, lock, 9, 0, 0, NULL, &error),
			 MAILINDEX_OK);
	size_t old_len =
	    read_bytes(f, MAILINDEX_LOG_NAME, old_log, sizeof(old_log));
	assert_int_equal(mailindex_compact(idx, lock, &error), MAILINDEX_OK);
	mailindex_free(&idx);
	mailindex_unlock(&lock);

	/* crash between the index rename and the log rename: the old log
	 * is stale and ignored; the next writer replaces it */
	write_bytes(f, MAILINDEX_LOG_NAME, old_log, old_len);
	assert_int_equal(try_open(f, &idx), MAILINDEX_OK);
	assert_int_equal(mailindex_highest_modseq(idx), 10);
	assert_int_equal(mailindex_log_end(idx), 0);
	mailindex_free(&idx);
	writer(f, 0, &lock, &idx);
	assert_int_equal(mailindex_set_flags(idx, lock, 9, 4, 0, NULL, &error),
			 MAILINDEX_OK);
	assert_int_equal(mailindex_log_seq(idx), 3);
	mailindex_free(&idx);
	mailindex_unlock(&lock);
	assert_int_equal(try_open(f, &idx), MAILINDEX_OK);
	assert_int_equal(mailindex_highest_modseq(idx), 11);
	mailindex_free(&idx);

	/* no log: fine for readers */
	char p[128];
	path_of(f, MAILINDEX_LOG_NAME, p, sizeof(p));
	assert_int_equal(unlink(p), 0);
	assert_int_equal(try_open(f, &idx), MAILINDEX_OK);
	mailindex_free(&idx);

	/* a log newer than the index, or of another UIDVALIDITY: rebuild */
	make_log_header(hdr, 9, 777);
	write_bytes(f, MAILINDEX_LOG_NAME, hdr, sizeof(hdr));
	assert_int_equal(try_open(f, &idx), MAILINDEX_REBUILD);
	assert_non_null(strstr(last_log, "newer"));
	make_log_header(hdr, 3, 778);
	write_bytes(f, MAILINDEX_LOG_NAME, hdr, sizeof(hdr));
	assert_int_equal(try_open(f, &idx), MAILINDEX_REBUILD);
	assert_non_null(strstr(last_log, "UIDVALIDITY"));
	/* an empty log file */
	write_bytes(f, MAILINDEX_LOG_NAME, hdr, 0);
	assert_int_equal(try_open(f, &idx), MAILINDEX_REBUILD);
}

static long maxrss_kib(void)
{
	struct rusage ru;
	assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
	return ru.ru_maxrss;
}

static double now_secs(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_garbage_log(void **state)
{
	struct fixture *f = *state;
	struct mailindex_lock *lock = NULL;
	struct mailindex *idx = NULL;
	const char *error = NULL;
	char path[128];
	uint8_t head[4096];

	/* an empty folder's index */
	assert_int_equal(mailindex_lock(f->dir, 1000, &lock, &error),
			 MAILINDEX_OK);
	assert_int_equal(
	    mailindex_rebuild_from(lock, 5, 1, NULL, 0, 100, 0, &idx, &error),
	    MAILINDEX_OK);
	mailindex_free(&idx);
	path_of(f, MAILINDEX_LOG_NAME, path, sizeof(path));

	srand(42);
	for (int variant = 0; variant < 3; variant++) {
		for (size_t i = 0; i < sizeof(head); i++)
			head[i] = (uint8_t)rand();
		if (variant >= 1) /* a valid header, then garbage */
			make_log_header(head, 1, 5);
		if (variant == 2) /* a valid header, then zeros */
			memset(head + MAILINDEX_LOG_HEADER_SIZE, 0,
			       sizeof(head) - MAILINDEX_LOG_HEADER_SIZE);
		write_bytes(f, MAILINDEX_LOG_NAME, head, sizeof(head));
		assert_int_equal(truncate(path, 200L << 20), 0);

		long rss0 = maxrss_kib();
		double t0 = now_secs();
		assert_int_equal(try_open(f, &idx), MAILINDEX_REBUILD);
		double secs = now_secs() - t0;
		assert_true(secs < 1.0);
		assert_true(maxrss_kib() - rss0 < 4096);
		assert_null(idx);
	}
	/* the parser's memory is its one buffer */
	struct mailindex_log_parser *p =
	    mailindex_log_parser_new(NULL, NULL, NULL);
	assert_true(mailindex_log_parser_memory(p) <=
		    MAILINDEX_LOG_ENTRY_MAX + 256);
	mailindex_log_parser_free(&p);

	/* repaired */
	assert_int_equal(
	    mailindex_rebuild_from(lock, 5, 1, NULL, 0, 100, 0, &idx, &error),
	    MAILINDEX_OK);
	mailindex_free(&idx);
	mailindex_unlock(&lock);
	assert_int_equal(file_size(f, MAILINDEX_LOG_NAME),
			 MAILINDEX_LOG_HEADER_SIZE);
	assert_int_equal(try_open(f, &idx), MAILINDEX_OK);
	assert_int_equal(mailindex_count(idx), 0);
	assert_int_equal(mailindex_log_seq(idx), 2); /* after the old seq 1 */
	mailindex_free(&idx);
}

static void test_rotation(void **state)
{
	struct fixture *f = *state;
	struct mailindex_lock *lock = NULL;
	struct mailindex *idx = NULL;
	const char *error = NULL;
	struct mailindex_record r;
	uint64_t last = 0, m;

	build3(f, 256);
	writer(f, 256, &lock, &idx);
	uint32_t seq0 = mailindex_log_seq(idx);
	for (uint32_t uid = 10; uid < 90; uid++) {
		r = mkrec(uid, 0, 0);
		assert_int_equal(mailindex_append(idx, lock, &r, &m, &error),
				 MAILINDEX_OK);
		assert_true(m > last);
		last = m;
		assert_int_equal(mailindex_set_flags(idx, lock, uid,
						     (uint8_t)(uid & 0x1f), uid,
						     &m, &error),
				 MAILINDEX_OK);
		assert_true(m > last);
		last = m;
		assert_true(file_size(f, MAILINDEX_LOG_NAME) < 256 + 64);
	}
	assert_true(mailindex_log_seq(idx) > seq0 + 10);
	mailindex_free(&idx);
	mailindex_unlock(&lock);

	assert_int_equal(try_open(f, &idx), MAILINDEX_OK);
	assert_int_equal(mailindex_count(idx), 83);
	assert_int_equal(mailindex_highest_modseq(idx), last);
	for (uint32_t uid = 10; uid < 90; uid++) {
		assert_int_equal(mailindex_lookup_uid(idx, uid, &r), uid - 6);
		assert_int_equal(r.flags, uid & 0x1f);
		assert_int_equal(r.keywords, uid);
		assert_int_equal(r.size, 1000 + uid);
	}
	mailindex_free(&idx);
}

static void test_limits(void **state)
{
	struct fixture *f = *state;
	struct mailindex_lock *lock = NULL;
	struct mailindex *idx = NULL;
	const char *error = NULL;
	struct mailindex_record recs[3] = {mkrec(1, 0, 0), mkrec(2, 0, 0),
					   mkrec(3, 0, 0)};

	assert_int_equal(mailindex_lock(f->dir, 1000, &lock, &error),
			 MAILINDEX_OK);
	assert_int_equal(
	    mailindex_rebuild_from(lock, 1, 4, recs, 3, 2, 0, &idx, &error),
	    MAILINDEX_LIMIT);
	recs[1].uid = 1; /* not increasing */
	assert_int_equal(
	    mailindex_rebuild_from(lock, 1, 4, recs, 3, 10, 0, &idx, &error),
	    MAILINDEX_ERROR);
	recs[1].uid = 2;
	assert_int_equal(
	    mailindex_rebuild_from(lock, 1, 3, recs, 3, 10, 0, &idx, &error),
	    MAILINDEX_ERROR); /* uid 3 not below uidnext 3 */
	assert_int_equal(
	    mailindex_rebuild_from(lock, 1, 4, recs, 3, 3, 0, &idx, &error),
	    MAILINDEX_OK);
	struct mailindex_record r = mkrec(4, 0, 0);
	assert_int_equal(mailindex_append(idx, lock, &r, NULL, &error),
			 MAILINDEX_LIMIT);
	assert_int_equal(mailindex_expunge(idx, lock, 1, NULL, &error),
			 MAILINDEX_OK);
	assert_int_equal(mailindex_append(idx, lock, &r, NULL, &error),
			 MAILINDEX_OK);
	mailindex_free(&idx);
	mailindex_unlock(&lock);
}

static void test_lock(void **state)
{
	struct fixture *f = *state;
	struct mailindex_lock *lock = NULL, *lock2 = NULL;
	const char *error = NULL;
	int to_parent[2], to_child[2];
	char c;

	assert_int_equal(pipe(to_parent), 0);
	assert_int_equal(pipe(to_child), 0);
	pid_t pid = fork();
	assert_true(pid != -1);
	if (pid == 0) {
		const char *err;
		if (mailindex_lock(f->dir, 1000, &lock, &err) != MAILINDEX_OK)
			_exit(1);
		if (write(to_parent[1], "L", 1) != 1)
			_exit(2);
		if (read(to_child[0], &c, 1) != 1)
			_exit(3);
		mailindex_unlock(&lock);
		if (write(to_parent[1], "U", 1) != 1)
			_exit(4);
		_exit(0);
	}
	assert_int_equal(read(to_parent[0], &c, 1), 1);
	assert_int_equal(c, 'L');
	double t0 = now_secs();
	assert_int_equal(mailindex_lock(f->dir, 200, &lock, &error),
			 MAILINDEX_LOCK_TIMEOUT);
	double secs = now_secs() - t0;
	assert_true(secs >= 0.19 && secs < 2.0);
	assert_null(lock);
	char holder[32];
	snprintf(holder, sizeof(holder), "pid=%ld ", (long)pid);
	assert_non_null(strstr(error, holder));

	assert_int_equal(write(to_child[1], "x", 1), 1);
	assert_int_equal(mailindex_lock(f->dir, 5000, &lock, &error),
			 MAILINDEX_OK);
	assert_int_equal(read(to_parent[0], &c, 1), 1);
	assert_int_equal(c, 'U');
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(mailindex_lock(f->dir, 50, &lock2, &error),
			 MAILINDEX_LOCK_TIMEOUT);
	mailindex_unlock(&lock);
	assert_int_equal(mailindex_lock(f->dir, 50, &lock2, &error),
			 MAILINDEX_OK);
	mailindex_unlock(&lock2);
	assert_int_equal(mailindex_lock("/nonexistent/dir", 50, &lock, &error),
			 MAILINDEX_ERROR);
	close(to_parent[0]);
	close(to_parent[1]);
	close(to_child[0]);
	close(to_child[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_record_roundtrip),
	    cmocka_unit_test(test_log_parser),
	    cmocka_unit_test(test_log_parser_limits),
	    cmocka_unit_test_setup_teardown(test_index_roundtrip, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_index_truncated_and_flipped,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_log_append_reopen, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_expunge_renumbers, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_torn_tail, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_log_mismatch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_garbage_log, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
	};
	log_set_callback(log_capture, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
