#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend/maildir.h"

struct fixture {
	char root[64];
};

static int rm_cb(const char *path, const struct stat *st, int flag,
		 struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct maildir_error err;
	snprintf(f->root, sizeof(f->root), "/tmp/mr-maildir-XXXXXX");
	if (mkdtemp(f->root) == NULL)
		return -1;
	/* mkdtemp made it: maildir_create only adds cur/ new/ tmp/ */
	if (maildir_create(f->root, &err) != 1)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	maildir_set_clock(NULL);
	maildir_set_random(NULL);
	maildir_set_fsync(true);
	nftw(f->root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void path_of(char *dst, size_t size, const char *dir, const char *sub,
		    const char *name)
{
	int n = name == NULL ? snprintf(dst, size, "%s/%s", dir, sub)
			     : snprintf(dst, size, "%s/%s/%s", dir, sub, name);
	assert_true(n > 0 && (size_t)n < size);
}

/* Entries in dir/sub other than . and .. */
static int count_entries(const char *dir, const char *sub)
{
	char path[PATH_MAX];
	path_of(path, sizeof(path), dir, sub, NULL);
	DIR *d = opendir(path);
	assert_non_null(d);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			n++;
	}
	closedir(d);
	return n;
}

static bool exists(const char *dir, const char *sub, const char *name)
{
	char path[PATH_MAX];
	struct stat st;
	path_of(path, sizeof(path), dir, sub, name);
	return stat(path, &st) == 0;
}

static size_t read_small(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	ssize_t n = read(fd, buf, size);
	assert_true(n >= 0);
	close(fd);
	return (size_t)n;
}

static void write_small(const char *path, const char *data)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	close(fd);
}

static void flags_str(const struct maildir_flags *fl, char *dst, size_t size)
{
	assert_true(maildir_flags_format(fl, dst, size) >= 0);
}

/* ---- names ---- */

static void test_name_parse_table(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		int ret;
		const char *base;
		bool has_size;
		uint64_t size;
		bool has_vsize;
		uint64_t vsize;
		bool has_info;
		const char *flags;
	} t[] = {
	    {"1700000000.M12P34Q5R0011223344556677.host,S=100,W=102:2,FS", 0,
	     "1700000000.M12P34Q5R0011223344556677.host,S=100,W=102", true, 100,
	     true, 102, true, "FS"},
	    {"123.host", 0, "123.host", false, 0, false, 0, false, ""},
	    {"123.host:2,", 0, "123.host", false, 0, false, 0, true, ""},
	    {"1.h:2,TSRPFD", 0, "1.h", false, 0, false, 0, true, "DFPRST"},
	    {"1.h:2,SSFFS", 0, "1.h", false, 0, false, 0, true, "FS"},
	    {"1.h:2,zaXS1", 0, "1.h", false, 0, false, 0, true, "1SXaz"},
	    {"1.h,S=abc:2,S", 0, "1.h,S=abc", false, 0, false, 0, true, "S"},
	    {"1.h,S=", 0, "1.h,S=", false, 0, false, 0, false, ""},
	    {"1.h,S=99999999999999999999999", 0,
	     "1.h,S=99999999999999999999999", false, 0, false, 0, false, ""},
	    {"1.h,S=18446744073709551615", 0, "1.h,S=18446744073709551615",
	     true, UINT64_MAX, false, 0, false, ""},
	    {"1.h,W=5,S=7", 0, "1.h,W=5,S=7", true, 7, true, 5, false, ""},
	    {"S=5", 0, "S=5", false, 0, false, 0, false, ""},
	    {"1.h,S=+5", 0, "1.h,S=+5", false, 0, false, 0, false, ""},
	    {"1.h:1,foo", 0, "1.h", false, 0, false, 0, false, ""},
	    {"1.h:2,S:2,T", 0, "1.h", false, 0, false, 0, true, ",2:ST"},
	    {"", -1, NULL, false, 0, false, 0, false, NULL},
	    {".hidden", -1, NULL, false, 0, false, 0, false, NULL},
	    {"a/b", -1, NULL, false, 0, false, 0, false, NULL},
	    {":2,S", -1, NULL, false, 0, false, 0, false, NULL},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct maildir_name n;
		struct maildir_error err;
		char fl[300];
		int ret = maildir_name_parse(str_cstr(t[i].name), &n, &err);
		if (ret != t[i].ret)
			fail_msg("%s: ret %d", t[i].name, ret);
		if (ret < 0) {
			assert_int_equal(err.kind, MAILDIR_ERR_INVALID);
			continue;
		}
		assert_true(str_eq(n.base, str_cstr(t[i].base)));
		assert_int_equal(n.has_size, t[i].has_size);
		assert_true(n.size == t[i].size);
		assert_int_equal(n.has_vsize, t[i].has_vsize);
		assert_true(n.vsize == t[i].vsize);
		assert_int_equal(n.has_info, t[i].has_info);
		flags_str(&n.flags, fl, sizeof(fl));
		assert_string_equal(fl, t[i].flags);
	}
}

static void test_name_parse_limits(void **state)
{
	(void)state;
	char name[MAILDIR_NAME_MAX + 2];
	struct maildir_name n;
	memset(name, 'x', sizeof(name));
	/* exactly NAME_MAX: fine */
	assert_int_equal(
	    maildir_name_parse(str_from(name, MAILDIR_NAME_MAX), &n, NULL), 0);
	/* one more: refused */
	assert_int_equal(
	    maildir_name_parse(str_from(name, MAILDIR_NAME_MAX + 1), &n, NULL),
	    -1);
	/* NUL inside */
	assert_int_equal(maildir_name_parse(str_from("a\0b", 3), &n, NULL), -1);
	/* flag bits */
	assert_int_equal(maildir_name_parse(STR("1.h:2,DFPRSTac"), &n, NULL),
			 0);
	assert_int_equal(n.flags.sys,
			 MAILDIR_FLAG_DRAFT | MAILDIR_FLAG_FLAGGED |
			     MAILDIR_FLAG_PASSED | MAILDIR_FLAG_REPLIED |
			     MAILDIR_FLAG_SEEN | MAILDIR_FLAG_TRASHED);
	assert_int_equal(n.flags.keywords, 0x5);
}

static void test_name_build(void **state)
{
	(void)state;
	char out[MAILDIR_NAME_MAX + 1];
	struct maildir_flags fl = {0};

	assert_int_equal(
	    maildir_name_build(STR("1.h,S=5"), NULL, out, sizeof(out)), 7);
	assert_string_equal(out, "1.h,S=5");
	assert_int_equal(maildir_name_build(STR("1.h"), &fl, out, sizeof(out)),
			 6);
	assert_string_equal(out, "1.h:2,");
	fl.sys = MAILDIR_FLAG_SEEN | MAILDIR_FLAG_DRAFT | MAILDIR_FLAG_REPLIED;
	fl.keywords = (1u << 25) | 1u | (1u << 2);
	assert_true(maildir_name_build(STR("1.h"), &fl, out, sizeof(out)) > 0);
	assert_string_equal(out, "1.h:2,DRSacz");

	/* unknown letters survive a parse + build with new flags */
	struct maildir_name n;
	assert_int_equal(maildir_name_parse(STR("1.h:2,SX9"), &n, NULL), 0);
	n.flags.sys = MAILDIR_FLAG_FLAGGED;
	assert_true(maildir_name_build(n.base, &n.flags, out, sizeof(out)) > 0);
	assert_string_equal(out, "1.h:2,9FX");

	/* refused bases */
	assert_int_equal(maildir_name_build(STR("a:b"), NULL, out, sizeof(out)),
			 -1);
	assert_int_equal(maildir_name_build(STR(".a"), NULL, out, sizeof(out)),
			 -1);
	assert_int_equal(maildir_name_build(STR("a/b"), NULL, out, sizeof(out)),
			 -1);
	assert_int_equal(maildir_name_build(STR(""), NULL, out, sizeof(out)),
			 -1);
	/* NAME_MAX: 252 + ":2," fits, one flag more does not */
	char base[253];
	memset(base, 'b', sizeof(base));
	struct maildir_flags none = {0}, seen = {.sys = MAILDIR_FLAG_SEEN};
	assert_int_equal(
	    maildir_name_build(str_from(base, 252), &none, out, sizeof(out)),
	    255);
	assert_int_equal(
	    maildir_name_build(str_from(base, 252), &seen, out, sizeof(out)),
	    -1);
	assert_string_equal(out, "");
	/* dst too small */
	char small[6];
	assert_int_equal(
	    maildir_name_build(STR("1.h"), &none, small, sizeof(small)), -1);
	assert_int_equal(maildir_name_build(STR("1.h"), &seen, out, 7), -1);
}

static void test_uniq_format(void **state)
{
	(void)state;
	char out[MAILDIR_NAME_MAX + 1], host[MAILDIR_HOST_MAX + 1];

	assert_int_equal(maildir_host_escape(STR("mx/1:a"), host, sizeof(host)),
			 12);
	assert_string_equal(host, "mx\\0571\\072a");
	/* cut at MAILDIR_HOST_MAX, never inside an escape */
	char longhost[100];
	memset(longhost, 'h', sizeof(longhost));
	longhost[62] = '/';
	int n = maildir_host_escape(str_from(longhost, sizeof(longhost)), host,
				    sizeof(host));
	assert_int_equal(n, 62);
	assert_int_equal(strchr(host, '\\'), NULL);

	struct maildir_uniq u = {
	    .now = {.tv_sec = 1700000000, .tv_nsec = 123456789},
	    .pid = 4242,
	    .counter = 7,
	    .random = 0xdeadbeefULL,
	    .host = STR("mail/x:y"),
	};
	assert_true(maildir_uniq_format(&u, out, sizeof(out)) > 0);
	assert_string_equal(out, "1700000000.M123456P4242Q7R00000000deadbeef."
				 "mail\\057x\\072y");
	u.host = STR("");
	assert_true(maildir_uniq_format(&u, out, sizeof(out)) > 0);
	assert_string_equal(out, "1700000000.M123456P4242Q7R00000000deadbeef."
				 "localhost");
	assert_int_equal(maildir_uniq_format(&u, out, 20), -1);
}

/* ---- delivery ---- */

static void test_deliver(void **state)
{
	struct fixture *f = *state;
	char name[MAILDIR_NAME_MAX + 1], path[PATH_MAX], buf[64];
	struct maildir_error err;
	static const char msg[] = "Subject: hi\r\n\r\nhello\r\n";

	assert_int_equal(maildir_deliver(f->root, msg, sizeof(msg) - 1, 0, NULL,
					 name, sizeof(name), &err),
			 1);
	struct maildir_name n;
	assert_int_equal(maildir_name_parse(str_cstr(name), &n, NULL), 0);
	assert_true(n.has_size);
	assert_int_equal(n.size, sizeof(msg) - 1);
	assert_false(n.has_info);
	assert_true(exists(f->root, "new", name));
	assert_int_equal(count_entries(f->root, "new"), 1);
	assert_int_equal(count_entries(f->root, "tmp"), 0);
	assert_int_equal(count_entries(f->root, "cur"), 0);
	path_of(path, sizeof(path), f->root, "new", name);
	assert_int_equal(read_small(path, buf, sizeof(buf)), sizeof(msg) - 1);
	assert_memory_equal(buf, msg, sizeof(msg) - 1);

	/* with flags: into cur/ with the info */
	struct maildir_flags fl = {
	    .sys = MAILDIR_FLAG_SEEN | MAILDIR_FLAG_FLAGGED, .keywords = 2};
	assert_int_equal(
	    maildir_deliver(f->root, "x", 1, 0, &fl, name, sizeof(name), &err),
	    1);
	assert_non_null(strstr(name, ",S=1,W=1:2,FSb"));
	assert_true(exists(f->root, "cur", name));
	assert_int_equal(count_entries(f->root, "tmp"), 0);

	/* empty message */
	assert_int_equal(
	    maildir_deliver(f->root, "", 0, 0, NULL, name, sizeof(name), &err),
	    1);
	assert_non_null(strstr(name, ",S=0"));
}

static void test_deliver_chunks(void **state)
{
	struct fixture *f = *state;
	char name[MAILDIR_NAME_MAX + 1], path[PATH_MAX];
	struct maildir_error err;
	struct maildir_save *s = maildir_save_begin(f->root, 0, &err);
	assert_non_null(s);
	assert_int_equal(count_entries(f->root, "tmp"), 1);

	/* small chunks through the buffer, then one large direct write */
	char chunk[1000];
	uint64_t total = 0;
	for (int i = 0; i < 100; i++) {
		memset(chunk, 'a' + i % 26, sizeof(chunk));
		assert_int_equal(
		    maildir_save_write(s, chunk, sizeof(chunk), &err), 0);
		total += sizeof(chunk);
	}
	static char big[70000];
	memset(big, 'Z', sizeof(big));
	assert_int_equal(maildir_save_write(s, big, sizeof(big), &err), 0);
	total += sizeof(big);
	assert_int_equal(maildir_save_write(s, "end", 3, &err), 0);
	total += 3;
	assert_int_equal(
	    maildir_save_finish(&s, NULL, name, sizeof(name), &err), 1);
	assert_null(s);

	struct maildir_name n;
	assert_int_equal(maildir_name_parse(str_cstr(name), &n, NULL), 0);
	assert_true(n.size == total);
	path_of(path, sizeof(path), f->root, "new", name);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_true((uint64_t)st.st_size == total);
	/* check the order of the content at a few places */
	int fd = open(path, O_RDONLY);
	char b[3];
	assert_int_equal(pread(fd, b, 1, 0), 1);
	assert_int_equal(b[0], 'a');
	assert_int_equal(pread(fd, b, 1, 99 * 1000), 1);
	assert_int_equal(b[0], 'a' + 99 % 26);
	assert_int_equal(pread(fd, b, 1, 100 * 1000), 1);
	assert_int_equal(b[0], 'Z');
	assert_int_equal(pread(fd, b, 3, (off_t)total - 3), 3);
	assert_memory_equal(b, "end", 3);
	close(fd);
	assert_int_equal(count_entries(f->root, "tmp"), 0);

	/* abort removes the tmp file */
	s = maildir_save_begin(f->root, 0, &err);
	assert_int_equal(maildir_save_write(s, "abc", 3, &err), 0);
	maildir_save_abort(&s);
	assert_null(s);
	maildir_save_abort(&s);
	assert_int_equal(count_entries(f->root, "tmp"), 0);
	assert_int_equal(count_entries(f->root, "new"), 1);
}

static void test_deliver_too_big(void **state)
{
	struct fixture *f = *state;
	char name[MAILDIR_NAME_MAX + 1];
	struct maildir_error err;

	/* exactly the limit is fine */
	assert_int_equal(maildir_deliver(f->root, "0123456789", 10, 10, NULL,
					 name, sizeof(name), &err),
			 1);
	assert_int_equal(maildir_deliver(f->root, "0123456789X", 11, 10, NULL,
					 name, sizeof(name), &err),
			 -1);
	assert_int_equal(err.kind, MAILDIR_ERR_TOOBIG);
	assert_non_null(strstr(err.msg, "10 bytes"));
	assert_string_equal(name, "");

	/* by chunks: the chunk that passes the limit fails, tmp is gone at
	 * once, later calls fail too */
	struct maildir_save *s = maildir_save_begin(f->root, 10, &err);
	assert_non_null(s);
	assert_int_equal(maildir_save_write(s, "12345", 5, &err), 0);
	assert_int_equal(maildir_save_write(s, "12345", 5, &err), 0);
	assert_int_equal(maildir_save_write(s, "1", 1, &err), -1);
	assert_int_equal(err.kind, MAILDIR_ERR_TOOBIG);
	assert_int_equal(count_entries(f->root, "tmp"), 0);
	assert_int_equal(maildir_save_write(s, "1", 1, &err), -1);
	assert_int_equal(
	    maildir_save_finish(&s, NULL, name, sizeof(name), &err), -1);
	assert_null(s);
	assert_int_equal(count_entries(f->root, "tmp"), 0);
	assert_int_equal(count_entries(f->root, "new"), 1);

	/* a huge length cannot wrap the size check */
	s = maildir_save_begin(f->root, 10, &err);
	assert_int_equal(maildir_save_write(s, "12345", 5, &err), 0);
	assert_int_equal(maildir_save_write(s, "x", SIZE_MAX, &err), -1);
	assert_int_equal(err.kind, MAILDIR_ERR_TOOBIG);
	maildir_save_abort(&s);
	assert_int_equal(count_entries(f->root, "tmp"), 0);
}

static void test_deliver_errors(void **state)
{
	struct fixture *f = *state;
	char name[MAILDIR_NAME_MAX + 1], dir[PATH_MAX];
	struct maildir_error err;

	path_of(dir, sizeof(dir), f->root, "nonexistent", NULL);
	assert_int_equal(
	    maildir_deliver(dir, "x", 1, 0, NULL, name, sizeof(name), &err),
	    -1);
	assert_int_equal(err.kind, MAILDIR_ERR_IO);
	assert_int_equal(err.errnum, ENOENT);
	assert_non_null(strstr(err.msg, "open("));

	/* new/ missing: link fails, tmp file removed */
	char newdir[PATH_MAX];
	path_of(newdir, sizeof(newdir), f->root, "new", NULL);
	assert_int_equal(rmdir(newdir), 0);
	assert_int_equal(
	    maildir_deliver(f->root, "x", 1, 0, NULL, name, sizeof(name), &err),
	    -1);
	assert_int_equal(err.kind, MAILDIR_ERR_IO);
	assert_int_equal(count_entries(f->root, "tmp"), 0);
	assert_string_equal(name, "");
	/* maildir_create repairs it */
	assert_int_equal(maildir_create(f->root, &err), 1);
	assert_int_equal(maildir_create(f->root, &err), 0);

	/* name buffer too small: refused, nothing left behind */
	char small[20];
	assert_int_equal(maildir_deliver(f->root, "x", 1, 0, NULL, small,
					 sizeof(small), &err),
			 -1);
	assert_int_equal(err.kind, MAILDIR_ERR_INVALID);
	assert_int_equal(count_entries(f->root, "tmp"), 0);
	assert_int_equal(count_entries(f->root, "new"), 0);
}

static void fixed_clock(struct timespec *ts_r)
{
	ts_r->tv_sec = 1700000000;
	ts_r->tv_nsec = 5000;
}

static uint64_t fixed_random(void)
{
	return 42;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_unique_10000(void **state)
{
	struct fixture *f = *state;
	enum { N = 10000 };
	struct maildir_error err;
	char **names = calloc(N, sizeof(*names));

	/* a clock that stands still and a "random" source that is not:
	 * pid + counter alone keep the names apart */
	maildir_set_clock(fixed_clock);
	maildir_set_random(fixed_random);
	/* 10,000 x 2 fsyncs take a minute on a disk; durability is covered
	 * by the other tests, uniqueness is what this one is about */
	maildir_set_fsync(false);
	for (int i = 0; i < N; i++) {
		char name[MAILDIR_NAME_MAX + 1];
		if (maildir_deliver(f->root, "m", 1, 0, NULL, name,
				    sizeof(name), &err) != 1)
			fail_msg("delivery %d: %s", i, err.msg);
		assert_int_equal(strncmp(name, "1700000000.M5P", 14), 0);
		names[i] = strdup(name);
	}
	qsort(names, N, sizeof(*names), cmp_str);
	for (int i = 1; i < N; i++)
		assert_string_not_equal(names[i - 1], names[i]);
	for (int i = 0; i < N; i++)
		free(names[i]);
	free(names);
	assert_int_equal(count_entries(f->root, "new"), N);
	assert_int_equal(count_entries(f->root, "tmp"), 0);
}

/* ---- scanning ---- */

struct scan_ctx {
	int calls, moved, in_new;
	int stop_after;
	char last[MAILDIR_NAME_MAX + 1];
};

static int scan_cb(const struct maildir_entry *e, void *context)
{
	struct scan_ctx *c = context;
	c->calls++;
	c->moved += e->moved;
	c->in_new += e->in_new;
	assert_ptr_equal(e->parsed->base.p, e->name);
	snprintf(c->last, sizeof(c->last), "%s", e->name);
	if (!e->in_new)
		assert_true(e->parsed->has_info);
	if (c->stop_after != 0 && c->calls >= c->stop_after)
		return -1;
	return 0;
}

static void test_scan(void **state)
{
	struct fixture *f = *state;
	char name[MAILDIR_NAME_MAX + 1], path[PATH_MAX];
	struct maildir_error err;
	struct maildir_scan_stats st;
	struct maildir_flags seen = {.sys = MAILDIR_FLAG_SEEN};

	for (int i = 0; i < 3; i++)
		assert_int_equal(maildir_deliver(f->root, "abc", 3, 0, NULL,
						 name, sizeof(name), &err),
				 1);
	assert_int_equal(maildir_deliver(f->root, "abc", 3, 0, &seen, name,
					 sizeof(name), &err),
			 1);
	/* noise the scan must skip */
	path_of(path, sizeof(path), f->root, "cur", ".hidden");
	write_small(path, "x");
	path_of(path, sizeof(path), f->root, "cur", "subdir");
	assert_int_equal(mkdir(path, 0700), 0);
	path_of(path, sizeof(path), f->root, "tmp", "1.inflight");
	write_small(path, "x");
	/* a new/ entry that already has an info keeps it */
	path_of(path, sizeof(path), f->root, "new", "99.x,S=1:2,F");
	write_small(path, "x");

	/* without moving: new/ entries reported as in_new */
	struct maildir_scan_settings set = {.move_new = false,
					    .tmp_max_age_secs = -1};
	struct scan_ctx c = {0};
	assert_int_equal(maildir_scan(f->root, &set, scan_cb, &c, &st, &err),
			 1);
	assert_int_equal(c.calls, 5);
	assert_int_equal(c.in_new, 4);
	assert_int_equal(st.skipped, 1); /* subdir; .hidden is not counted */
	assert_int_equal(count_entries(f->root, "new"), 4);

	set.move_new = true;
	set.tmp_max_age_secs = MAILDIR_TMP_DELETE_SECS;
	memset(&c, 0, sizeof(c));
	assert_int_equal(maildir_scan(f->root, &set, scan_cb, &c, &st, &err),
			 1);
	assert_int_equal(c.calls, 5);
	assert_int_equal(c.moved, 4);
	assert_int_equal(c.in_new, 0);
	assert_int_equal(st.moved, 4);
	assert_int_equal(st.listed, 5);
	assert_int_equal(st.tmp_removed, 0);
	assert_int_equal(count_entries(f->root, "new"), 0);
	assert_int_equal(count_entries(f->root, "tmp"), 1); /* young */
	/* 5 messages + .hidden + subdir */
	assert_int_equal(count_entries(f->root, "cur"), 7);
	assert_true(exists(f->root, "cur", "99.x,S=1:2,F"));

	/* each moved name is base + ":2," */
	DIR *d;
	path_of(path, sizeof(path), f->root, "cur", NULL);
	assert_non_null(d = opendir(path));
	struct dirent *de;
	int empty_info = 0;
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		if (len > 3 && strcmp(de->d_name + len - 3, ":2,") == 0)
			empty_info++;
	}
	closedir(d);
	assert_int_equal(empty_info, 3);

	/* a second scan moves nothing */
	memset(&c, 0, sizeof(c));
	assert_int_equal(maildir_scan(f->root, &set, scan_cb, &c, &st, &err),
			 1);
	assert_int_equal(c.calls, 5);
	assert_int_equal(st.moved, 0);

	/* limits and stopping */
	set.max_entries = 2;
	memset(&c, 0, sizeof(c));
	assert_int_equal(maildir_scan(f->root, &set, scan_cb, &c, &st, &err),
			 -1);
	assert_int_equal(err.kind, MAILDIR_ERR_LIMIT);
	assert_int_equal(c.calls, 2);
	set.max_entries = 0;
	memset(&c, 0, sizeof(c));
	c.stop_after = 1;
	assert_int_equal(maildir_scan(f->root, &set, scan_cb, &c, NULL, &err),
			 -1);
	assert_int_equal(err.kind, MAILDIR_ERR_STOPPED);
	assert_int_equal(c.calls, 1);

	/* a missing cur/ is an error with a message */
	char other[PATH_MAX];
	path_of(other, sizeof(other), f->root, "nope", NULL);
	assert_int_equal(maildir_scan(other, &set, scan_cb, &c, NULL, &err),
			 -1);
	assert_int_equal(err.kind, MAILDIR_ERR_IO);
}

static void age_file(const char *path, time_t secs_ago)
{
	struct timespec ts[2];
	clock_gettime(CLOCK_REALTIME, &ts[0]);
	ts[0].tv_sec -= secs_ago;
	ts[1] = ts[0];
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static void test_tmp_clean(void **state)
{
	struct fixture *f = *state;
	char old1[PATH_MAX], old2[PATH_MAX], young[PATH_MAX], dir[PATH_MAX];
	struct maildir_error err;

	path_of(old1, sizeof(old1), f->root, "tmp", "1.old");
	path_of(old2, sizeof(old2), f->root, "tmp", "2.old");
	path_of(young, sizeof(young), f->root, "tmp", "3.young");
	path_of(dir, sizeof(dir), f->root, "tmp", "adir");
	write_small(old1, "x");
	write_small(old2, "x");
	write_small(young, "x");
	assert_int_equal(mkdir(dir, 0700), 0);
	age_file(old1, 37 * 3600);
	age_file(old2, 37 * 3600);
	age_file(young, 35 * 3600);
	age_file(dir, 37 * 3600);

	assert_int_equal(
	    maildir_tmp_clean(f->root, MAILDIR_TMP_DELETE_SECS, &err), 2);
	assert_int_equal(access(old1, F_OK), -1);
	assert_int_equal(access(old2, F_OK), -1);
	assert_int_equal(access(young, F_OK), 0);
	assert_int_equal(access(dir, F_OK), 0); /* directories stay */

	/* through a scan, with a smaller limit */
	struct maildir_scan_settings set = {.move_new = true,
					    .tmp_max_age_secs = 3600};
	struct maildir_scan_stats st;
	struct scan_ctx c = {0};
	assert_int_equal(maildir_scan(f->root, &set, scan_cb, &c, &st, &err),
			 1);
	assert_int_equal(st.tmp_removed, 1);
	assert_int_equal(access(young, F_OK), -1);

	/* the clock hook decides what "now" is */
	write_small(young, "x");
	maildir_set_clock(fixed_clock); /* 2023: the file is from the future */
	assert_int_equal(maildir_tmp_clean(f->root, 0, &err), 0);
	maildir_set_clock(NULL);
}

/* ---- flag changes and expunge ---- */

static void test_set_flags(void **state)
{
	struct fixture *f = *state;
	char name[MAILDIR_NAME_MAX + 1], newname[MAILDIR_NAME_MAX + 1];
	char from[PATH_MAX], to[PATH_MAX];
	struct maildir_error err;
	struct maildir_flags seen = {.sys = MAILDIR_FLAG_SEEN};
	struct maildir_flags fs = {
	    .sys = MAILDIR_FLAG_SEEN | MAILDIR_FLAG_FLAGGED, .keywords = 1};

	assert_int_equal(maildir_deliver(f->root, "abc", 3, 0, &seen, name,
					 sizeof(name), &err),
			 1);
	assert_int_equal(maildir_set_flags(f->root, name, &fs, newname,
					   sizeof(newname), &err),
			 1);
	assert_non_null(strstr(newname, ",S=3,W=3:2,FSa"));
	assert_false(exists(f->root, "cur", name));
	assert_true(exists(f->root, "cur", newname));

	/* same flags: nothing to do, still 1 */
	char again[MAILDIR_NAME_MAX + 1];
	assert_int_equal(maildir_set_flags(f->root, newname, &fs, again,
					   sizeof(again), &err),
			 1);
	assert_string_equal(again, newname);

	/* vanished: another process set T meanwhile; we find the base
	 * under the other info and apply our flags */
	struct maildir_name n;
	assert_int_equal(maildir_name_parse(str_cstr(newname), &n, NULL), 0);
	char other[MAILDIR_NAME_MAX + 1];
	snprintf(other, sizeof(other), "%.*s:2,ST", STR_FMT(n.base));
	path_of(from, sizeof(from), f->root, "cur", newname);
	path_of(to, sizeof(to), f->root, "cur", other);
	assert_int_equal(rename(from, to), 0);
	struct maildir_flags draft = {.sys = MAILDIR_FLAG_DRAFT};
	assert_int_equal(maildir_set_flags(f->root, newname, &draft, again,
					   sizeof(again), &err),
			 1);
	assert_non_null(strstr(again, ",S=3,W=3:2,D"));
	assert_true(exists(f->root, "cur", again));
	assert_false(exists(f->root, "cur", other));
	assert_int_equal(count_entries(f->root, "cur"), 1);

	/* vanished and the found name already carries our flags */
	assert_int_equal(maildir_set_flags(f->root, newname, &draft, newname,
					   sizeof(newname), &err),
			 1);
	assert_string_equal(newname, again);

	/* gone for good: expunged */
	path_of(from, sizeof(from), f->root, "cur", again);
	assert_int_equal(unlink(from), 0);
	assert_int_equal(maildir_set_flags(f->root, again, &fs, newname,
					   sizeof(newname), &err),
			 0);
	assert_int_equal(err.kind, MAILDIR_ERR_NOTFOUND);
	assert_string_equal(newname, "");

	/* a base that is the prefix of another is not confused with it */
	path_of(to, sizeof(to), f->root, "cur", "77.hostlonger:2,S");
	write_small(to, "x");
	assert_int_equal(maildir_set_flags(f->root, "77.host:2,", &fs, newname,
					   sizeof(newname), &err),
			 0);

	/* invalid names */
	assert_int_equal(maildir_set_flags(f->root, "../x", &fs, newname,
					   sizeof(newname), &err),
			 -1);
	assert_int_equal(err.kind, MAILDIR_ERR_INVALID);
}

static void test_expunge(void **state)
{
	struct fixture *f = *state;
	char name[MAILDIR_NAME_MAX + 1], newname[MAILDIR_NAME_MAX + 1];
	struct maildir_error err;
	struct maildir_flags seen = {.sys = MAILDIR_FLAG_SEEN};
	struct maildir_flags fl = {.sys = MAILDIR_FLAG_FLAGGED};

	assert_int_equal(maildir_deliver(f->root, "abc", 3, 0, &seen, name,
					 sizeof(name), &err),
			 1);
	assert_int_equal(maildir_expunge(f->root, name, &err), 1);
	assert_int_equal(count_entries(f->root, "cur"), 0);
	assert_int_equal(maildir_expunge(f->root, name, &err), 0);

	/* stale name (flags changed since): found by base */
	assert_int_equal(maildir_deliver(f->root, "abc", 3, 0, &seen, name,
					 sizeof(name), &err),
			 1);
	assert_int_equal(maildir_set_flags(f->root, name, &fl, newname,
					   sizeof(newname), &err),
			 1);
	assert_int_equal(maildir_expunge(f->root, name, &err), 1);
	assert_int_equal(count_entries(f->root, "cur"), 0);

	char found[MAILDIR_NAME_MAX + 1];
	assert_int_equal(maildir_find_base(f->root, "cur", STR("1.x"), found,
					   sizeof(found), &err),
			 0);
	assert_int_equal(maildir_expunge(f->root, "/etc/passwd", &err), -1);
}

/* ---- keywords ---- */

static void test_keywords(void **state)
{
	struct fixture *f = *state;
	struct maildir_keywords kw, back;
	struct maildir_error err;
	char path[PATH_MAX], buf[4096];

	assert_int_equal(maildir_keywords_read(f->root, &kw, &err), 0);
	assert_int_equal(maildir_keywords_add(&kw, STR("$Forwarded"), &err), 0);
	assert_int_equal(maildir_keywords_add(&kw, STR("Junk"), &err), 1);
	assert_int_equal(maildir_keywords_add(&kw, STR("$Forwarded"), &err), 0);
	assert_int_equal(maildir_keywords_find(&kw, STR("Junk")), 1);
	assert_int_equal(maildir_keywords_find(&kw, STR("junk")), -1);
	assert_int_equal(maildir_keywords_add(&kw, STR("\\Seen"), &err), -1);
	assert_int_equal(maildir_keywords_add(&kw, STR("a b"), &err), -1);
	assert_int_equal(maildir_keywords_add(&kw, STR(""), &err), -1);
	assert_int_equal(err.kind, MAILDIR_ERR_INVALID);

	assert_int_equal(maildir_keywords_write(f->root, &kw, &err), 0);
	path_of(path, sizeof(path), f->root, MAILDIR_KEYWORDS_FILE, NULL);
	size_t n = read_small(path, buf, sizeof(buf));
	assert_int_equal(n, strlen("0 $Forwarded\n1 Junk\n"));
	assert_memory_equal(buf, "0 $Forwarded\n1 Junk\n", n);
	assert_int_equal(maildir_keywords_read(f->root, &back, &err), 1);
	assert_memory_equal(&back, &kw, sizeof(kw));

	/* 26 at most */
	for (int i = 2; i < MAILDIR_KEYWORDS_MAX; i++) {
		char k[16];
		snprintf(k, sizeof(k), "kw%d", i);
		assert_int_equal(maildir_keywords_add(&kw, str_cstr(k), &err),
				 i);
	}
	assert_int_equal(maildir_keywords_add(&kw, STR("one-more"), &err), -1);
	assert_int_equal(err.kind, MAILDIR_ERR_LIMIT);
	assert_int_equal(maildir_keywords_write(f->root, &kw, &err), 0);
	assert_int_equal(maildir_keywords_read(f->root, &back, &err), 1);
	assert_memory_equal(&back, &kw, sizeof(kw));
	assert_string_equal(back.names[25], "kw25");

	/* a sloppy file: sparse, CRLF, bad lines, duplicates, overlong line,
	 * no final newline */
	char longline[400];
	memset(longline, 'L', sizeof(longline));
	longline[0] = '7';
	longline[1] = ' ';
	longline[sizeof(longline) - 1] = '\0';
	snprintf(buf, sizeof(buf),
		 "3 Three\r\n"
		 "26 TooHigh\n"
		 "-1 Neg\n"
		 "x Bad\n"
		 "3 DupIndex\n"
		 "4 Three\n"
		 "5  Space\n"
		 "\n"
		 "%s\n"
		 "6 \\Seen\n"
		 "9 Nine",
		 longline);
	write_small(path, buf);
	assert_int_equal(maildir_keywords_read(f->root, &back, &err), 1);
	for (int i = 0; i < MAILDIR_KEYWORDS_MAX; i++) {
		if (i == 3)
			assert_string_equal(back.names[i], "Three");
		else if (i == 9)
			assert_string_equal(back.names[i], "Nine");
		else
			assert_string_equal(back.names[i], "");
	}
	/* adding uses the first free slot */
	assert_int_equal(maildir_keywords_add(&back, STR("New"), &err), 0);

	/* no tmp file left behind by writes */
	int entries = 0;
	DIR *d = opendir(f->root);
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		entries += strncmp(de->d_name, MAILDIR_KEYWORDS_FILE ".tmp",
				   strlen(MAILDIR_KEYWORDS_FILE ".tmp")) == 0;
	closedir(d);
	assert_int_equal(entries, 0);
}

/* ---- folders ---- */

static void test_folder_names(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		int ok;
	} t[] = {
	    {"Archive", 1},  {"Archive.2024", 1},
	    {"a b&-", 1},    {"\xc3\xa9t\xc3\xa9", 1},
	    {"", 0},         {".", 0},
	    {"..", 0},       {".Archive", 0},
	    {"Archive.", 0}, {"a..b", 0},
	    {"a/b", 0},      {"a\tb", 0},
	    {"a\x7f", 0},    {"a\rb", 0},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		int r = maildir_folder_name_check(str_cstr(t[i].name), NULL);
		if ((r == 0) != t[i].ok)
			fail_msg("folder name %zu: %d", i, r);
	}
	char name[300];
	memset(name, 'n', sizeof(name));
	assert_int_equal(maildir_folder_name_check(
			     str_from(name, MAILDIR_FOLDER_NAME_MAX), NULL),
			 0);
	assert_int_equal(maildir_folder_name_check(
			     str_from(name, MAILDIR_FOLDER_NAME_MAX + 1), NULL),
			 -1);
	assert_int_equal(maildir_folder_name_check(str_from("a\0b", 3), NULL),
			 -1);

	char path[PATH_MAX];
	assert_int_equal(
	    maildir_folder_path("/r", STR("INBOX"), path, sizeof(path), NULL),
	    0);
	assert_string_equal(path, "/r");
	assert_int_equal(
	    maildir_folder_path("/r", STR("inbox"), path, sizeof(path), NULL),
	    0);
	assert_string_equal(path, "/r");
	assert_int_equal(
	    maildir_folder_path("/r", STR("A.b"), path, sizeof(path), NULL), 0);
	assert_string_equal(path, "/r/.A.b");
	assert_int_equal(maildir_folder_path("/r", STR("A.b"), path, 6, NULL),
			 -1);

	assert_int_equal(
	    maildir_folder_from_dirname(".A.b", name, sizeof(name)), 0);
	assert_string_equal(name, "A.b");
	assert_int_equal(maildir_folder_from_dirname("A", name, sizeof(name)),
			 -1);
	assert_int_equal(maildir_folder_from_dirname("..", name, sizeof(name)),
			 -1);
	assert_int_equal(maildir_folder_from_dirname(".", name, sizeof(name)),
			 -1);
	assert_int_equal(
	    maildir_folder_from_dirname("..mr-delete.1.2", name, sizeof(name)),
	    -1);
	assert_int_equal(
	    maildir_folder_from_dirname(".INBOX", name, sizeof(name)), -1);
}

struct list_ctx {
	int n;
	char names[8][64];
};

static int list_cb(const char *name, void *context)
{
	struct list_ctx *c = context;
	if (c->n < 8)
		snprintf(c->names[c->n], sizeof(c->names[0]), "%s", name);
	c->n++;
	return 0;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void list_sorted(const char *root, struct list_ctx *c)
{
	struct maildir_error err;
	memset(c, 0, sizeof(*c));
	int n = maildir_folder_list(root, 0, list_cb, c, &err);
	assert_int_equal(n, c->n);
	qsort(c->names, (size_t)(c->n < 8 ? c->n : 8), sizeof(c->names[0]),
	      cmp_name);
}

static void test_folders(void **state)
{
	struct fixture *f = *state;
	struct maildir_error err;
	struct list_ctx c;
	char path[PATH_MAX], name[MAILDIR_NAME_MAX + 1];

	assert_int_equal(maildir_folder_create(f->root, STR("Archive"), &err),
			 1);
	assert_int_equal(
	    maildir_folder_create(f->root, STR("Archive.2024"), &err), 1);
	assert_int_equal(maildir_folder_create(f->root, STR("Work"), &err), 1);
	assert_int_equal(maildir_folder_create(f->root, STR("Work"), &err), 0);
	assert_int_equal(maildir_folder_create(f->root, STR("INBOX"), &err),
			 -1);
	assert_int_equal(maildir_folder_create(f->root, STR("a..b"), &err), -1);
	assert_int_equal(err.kind, MAILDIR_ERR_INVALID);
	assert_true(exists(f->root, ".Archive", "cur"));
	assert_true(exists(f->root, ".Archive", "new"));
	assert_true(exists(f->root, ".Archive", "tmp"));
	assert_true(exists(f->root, ".Archive", "maildirfolder"));

	/* entries that are not folders */
	path_of(path, sizeof(path), f->root, ".junk", NULL);
	assert_int_equal(mkdir(path, 0700), 0); /* no cur/ */
	path_of(path, sizeof(path), f->root, ".file", NULL);
	write_small(path, "x");
	path_of(path, sizeof(path), f->root, "plain", NULL);
	assert_int_equal(mkdir(path, 0700), 0);
	path_of(path, sizeof(path), f->root, ".a..b", NULL);
	assert_int_equal(maildir_create(path, &err), 1); /* bad name */

	list_sorted(f->root, &c);
	assert_int_equal(c.n, 3);
	assert_string_equal(c.names[0], "Archive");
	assert_string_equal(c.names[1], "Archive.2024");
	assert_string_equal(c.names[2], "Work");

	memset(&c, 0, sizeof(c));
	assert_int_equal(maildir_folder_list(f->root, 2, list_cb, &c, &err),
			 -1);
	assert_int_equal(err.kind, MAILDIR_ERR_LIMIT);
	assert_int_equal(c.n, 2);

	/* rename moves the children too */
	assert_int_equal(maildir_folder_path(f->root, STR("Archive"), path,
					     sizeof(path), &err),
			 0);
	assert_int_equal(
	    maildir_deliver(path, "abc", 3, 0, NULL, name, sizeof(name), &err),
	    1);
	assert_int_equal(maildir_folder_rename(f->root, STR("Archive"),
					       STR("Old.Mail"), &err),
			 1);
	list_sorted(f->root, &c);
	assert_int_equal(c.n, 3);
	assert_string_equal(c.names[0], "Old.Mail");
	assert_string_equal(c.names[1], "Old.Mail.2024");
	assert_string_equal(c.names[2], "Work");
	assert_true(exists(f->root, ".Old.Mail/new", name));

	/* refused renames */
	assert_int_equal(
	    maildir_folder_rename(f->root, STR("Old.Mail"), STR("Work"), &err),
	    -1);
	assert_int_equal(err.kind, MAILDIR_ERR_EXISTS);
	assert_int_equal(maildir_folder_rename(f->root, STR("Old.Mail"),
					       STR("Old.Mail.Sub"), &err),
			 -1);
	assert_int_equal(err.kind, MAILDIR_ERR_INVALID);
	assert_int_equal(
	    maildir_folder_rename(f->root, STR("INBOX"), STR("X"), &err), -1);
	assert_int_equal(
	    maildir_folder_rename(f->root, STR("Nope"), STR("X"), &err), 0);
	assert_int_equal(err.kind, MAILDIR_ERR_NOTFOUND);
	/* a child conflict is found before anything moves */
	assert_int_equal(maildir_folder_create(f->root, STR("Z"), &err), 1);
	assert_int_equal(maildir_folder_create(f->root, STR("Z.2024"), &err),
			 1);
	assert_int_equal(maildir_folder_create(f->root, STR("Q.2024"), &err),
			 1);
	assert_int_equal(
	    maildir_folder_rename(f->root, STR("Z"), STR("Q"), &err), -1);
	assert_int_equal(err.kind, MAILDIR_ERR_EXISTS);
	assert_true(exists(f->root, ".Z", "cur"));
	assert_true(exists(f->root, ".Z.2024", "cur"));
	assert_false(exists(f->root, ".Q", NULL));
	/* to a deeper name, and back up again */
	assert_int_equal(
	    maildir_folder_rename(f->root, STR("Z"), STR("Q.sub"), &err), 1);
	assert_true(exists(f->root, ".Q.sub.2024", "cur"));
	assert_int_equal(
	    maildir_folder_rename(f->root, STR("Q.sub"), STR("Q"), &err),
	    -1); /* Q.2024 exists */
	assert_int_equal(
	    maildir_folder_rename(f->root, STR("Q.sub"), STR("R"), &err), 1);
	assert_true(exists(f->root, ".R.2024", "cur"));
	assert_false(exists(f->root, ".Q.sub", NULL));

	/* delete: the folder and its files go, the children stay */
	assert_int_equal(maildir_folder_delete(f->root, STR("Old.Mail"), &err),
			 1);
	assert_false(exists(f->root, ".Old.Mail", NULL));
	assert_true(exists(f->root, ".Old.Mail.2024", "cur"));
	assert_int_equal(maildir_folder_delete(f->root, STR("Old.Mail"), &err),
			 0);
	assert_int_equal(err.kind, MAILDIR_ERR_NOTFOUND);
	assert_int_equal(maildir_folder_delete(f->root, STR("INBOX"), &err),
			 -1);
	assert_int_equal(maildir_folder_delete(f->root, STR("../x"), &err), -1);
	/* nothing hidden left behind by delete */
	DIR *d = opendir(f->root);
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		assert_int_equal(strncmp(de->d_name, "..mr-delete", 11) != 0,
				 1);
	closedir(d);
}

static void test_create(void **state)
{
	struct fixture *f = *state;
	struct maildir_error err;
	char path[PATH_MAX];

	path_of(path, sizeof(path), f->root, "user2", NULL);
	assert_int_equal(maildir_create(path, &err), 1);
	assert_int_equal(maildir_create(path, &err), 0);
	assert_true(exists(path, "cur", NULL));
	/* a file where a directory should be */
	path_of(path, sizeof(path), f->root, "user3", NULL);
	write_small(path, "x");
	assert_int_equal(maildir_create(path, &err), -1);
	assert_int_equal(err.kind, MAILDIR_ERR_INVALID);
	path_of(path, sizeof(path), f->root, "no/such/dir", NULL);
	assert_int_equal(maildir_create(path, &err), -1);
	assert_int_equal(err.kind, MAILDIR_ERR_IO);
	assert_non_null(strstr(err.msg, "mkdir("));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_name_parse_table),
	    cmocka_unit_test(test_name_parse_limits),
	    cmocka_unit_test(test_name_build),
	    cmocka_unit_test(test_uniq_format),
	    cmocka_unit_test(test_folder_names),
	    cmocka_unit_test_setup_teardown(test_deliver, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deliver_chunks, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_deliver_too_big, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_deliver_errors, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_unique_10000, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_scan, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tmp_clean, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_set_flags, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_expunge, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_keywords, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_folders, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_create, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
