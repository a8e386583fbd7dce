#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/mailbox.h"
#include "backend/maildir.h"
#include "backend/mailindex.h"
#include "backend/uidlist.h"
#include "log.h"

/* ---- fixtures and helpers ---------------------------------------------- */

struct fixture {
	char dir[64];
};

static char log_seen[8192];

static void log_capture(enum log_level level, const char *line, void *ctx)
{
	(void)level;
	(void)ctx;
	size_t used = strlen(log_seen);
	snprintf(log_seen + used, sizeof(log_seen) - used, "%s\n", line);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	strcpy(f->dir, "/tmp/test_mailbox.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	maildir_set_fsync(false);
	log_seen[0] = '\0';
	log_set_callback(log_capture, NULL);
	*state = f;
	return 0;
}

static int rm_cb(const char *path, const struct stat *st, int type,
		 struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	log_set_callback(NULL, NULL);
	assert_int_equal(nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS), 0);
	free(f);
	return 0;
}

static struct mailbox *open_mb(const struct fixture *f)
{
	struct mailbox_settings set = {.create = true};
	struct mailbox *mb = NULL;
	const char *error = NULL;

	if (mailbox_open(f->dir, &set, &mb, &error) != 1)
		fail_msg("open: %s", error);
	return mb;
}

/* Delivers 5 messages of distinct sizes into new/. */
static void deliver5(const struct fixture *f)
{
	struct maildir_error merr;
	char name[MAILDIR_NAME_MAX + 1];
	char msg[256];

	assert_true(maildir_create(f->dir, &merr) >= 0);
	for (int i = 1; i <= 5; i++) {
		int n = snprintf(
		    msg, sizeof(msg), "Subject: m%d\r\n\r\nbody%.*s\r\n", i,
		    i * 7, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
		assert_int_equal(maildir_deliver(f->dir, msg, (size_t)n, 0,
						 NULL, name, sizeof(name),
						 &merr),
				 1);
	}
}

static void path_of(const struct fixture *f, const char *file, char *dst,
		    size_t size)
{
	assert_true((size_t)snprintf(dst, size, "%s/%s", f->dir, file) < size);
}

static void cur_path(const struct fixture *f, const char *name, char *dst,
		     size_t size)
{
	assert_true((size_t)snprintf(dst, size, "%s/cur/%s", f->dir, name) <
		    size);
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

struct snap {
	uint32_t count, uidvalidity;
	uint32_t uid[16];
	uint8_t flags[16];
	uint32_t keywords[16];
};

static void snapshot(const struct mailbox *mb, struct snap *s)
{
	memset(s, 0, sizeof(*s));
	s->count = mailbox_count(mb);
	s->uidvalidity = mailbox_uidvalidity(mb);
	assert_true(s->count <= 16);
	for (uint32_t seq = 1; seq <= s->count; seq++) {
		struct mailbox_message m;
		assert_true(mailbox_lookup_seq(mb, seq, &m));
		s->uid[seq - 1] = m.uid;
		s->flags[seq - 1] = m.flags;
		s->keywords[seq - 1] = m.keywords;
	}
}

static void assert_same(const struct snap *a, const struct snap *b)
{
	assert_int_equal(a->count, b->count);
	assert_int_equal(a->uidvalidity, b->uidvalidity);
	for (uint32_t i = 0; i < a->count; i++) {
		assert_int_equal(a->uid[i], b->uid[i]);
		assert_int_equal(a->flags[i], b->flags[i]);
		assert_int_equal(a->keywords[i], b->keywords[i]);
	}
}

/* Opens 5 delivered messages, flags uid 2 and 4, closes. */
static void prepare(const struct fixture *f, struct snap *s)
{
	const char *error = NULL;

	deliver5(f);
	struct mailbox *mb = open_mb(f);
	assert_int_equal(
	    mailbox_set_flags(mb, 2, MAILBOX_FLAG_SEEN | MAILBOX_FLAG_FLAGGED,
			      1u << 1, MAILBOX_FLAGS_ADD, NULL, &error),
	    1);
	assert_int_equal(mailbox_set_flags(mb, 4, MAILBOX_FLAG_DELETED, 0,
					   MAILBOX_FLAGS_REPLACE, NULL, &error),
			 1);
	snapshot(mb, s);
	mailbox_close(&mb);
}

/* ---- tests --------------------------------------------------------------- */

static void test_empty(void **state)
{
	struct fixture *f = *state;
	struct mailbox *mb = open_mb(f);
	struct mailbox_message m;

	assert_int_equal(mailbox_count(mb), 0);
	assert_int_equal(mailbox_uidnext(mb), 1);
	assert_true(mailbox_uidvalidity(mb) != 0);
	assert_false(mailbox_lookup_seq(mb, 1, &m));
	assert_int_equal(mailbox_lookup_uid(mb, 1, &m), 0);
	mailbox_close(&mb);
	assert_null(mb);
	mailbox_close(&mb);

	/* A second open finds the same UIDVALIDITY and no rebuild. */
	struct snap a, b;
	mb = open_mb(f);
	snapshot(mb, &a);
	mailbox_close(&mb);
	mb = open_mb(f);
	snapshot(mb, &b);
	mailbox_close(&mb);
	assert_same(&a, &b);
}

static void test_open_missing(void **state)
{
	struct fixture *f = *state;
	struct mailbox *mb = NULL;
	const char *error = NULL;
	char path[128];

	path_of(f, "nope", path, sizeof(path));
	assert_int_equal(mailbox_open(path, NULL, &mb, &error), -1);
	assert_null(mb);
	assert_non_null(error);
}

static void test_deliver_open(void **state)
{
	struct fixture *f = *state;
	struct mailbox_message m;
	char path[256];

	deliver5(f);
	struct mailbox *mb = open_mb(f);
	assert_int_equal(mailbox_count(mb), 5);
	assert_int_equal(mailbox_uidnext(mb), 6);
	for (uint32_t seq = 1; seq <= 5; seq++) {
		assert_true(mailbox_lookup_seq(mb, seq, &m));
		assert_int_equal(m.uid, seq);
		assert_int_equal(m.flags, 0);
		assert_true(m.size > 0);
		assert_true(m.date > 0);
		cur_path(f, m.name, path, sizeof(path));
		assert_true(exists(path)); /* moved new/ -> cur/ */
		assert_int_equal(mailbox_lookup_uid(mb, seq, NULL), seq);
	}
	/* Sizes are the real ones (distinct: the messages differ). */
	struct mailbox_message m1, m2;
	assert_true(mailbox_lookup_seq(mb, 1, &m1));
	assert_true(mailbox_lookup_seq(mb, 2, &m2));
	assert_int_equal(m2.size - m1.size, 7);
	assert_false(mailbox_lookup_seq(mb, 6, &m));
	assert_false(mailbox_lookup_seq(mb, 0, &m));
	mailbox_close(&mb);
}

static void test_set_flags(void **state)
{
	struct fixture *f = *state;
	struct mailbox_message m;
	const char *error = NULL;
	uint64_t modseq = 0, modseq2 = 0;
	char path[256];

	deliver5(f);
	struct mailbox *mb = open_mb(f);
	log_seen[0] = '\0'; /* the first open built the index */
	uint64_t before = mailbox_highest_modseq(mb);
	assert_int_equal(
	    mailbox_set_flags(mb, 2, MAILBOX_FLAG_SEEN | MAILBOX_FLAG_ANSWERED,
			      1u << 0, MAILBOX_FLAGS_ADD, &modseq, &error),
	    1);
	assert_true(modseq > before);
	assert_int_equal(mailbox_lookup_uid(mb, 2, &m), 2);
	assert_int_equal(m.flags, MAILBOX_FLAG_SEEN | MAILBOX_FLAG_ANSWERED);
	assert_int_equal(m.keywords, 1);
	assert_int_equal(m.modseq, modseq);
	assert_non_null(strstr(m.name, ":2,RSa"));
	cur_path(f, m.name, path, sizeof(path));
	assert_true(exists(path));

	/* Remove one flag; unchanged flags write nothing. */
	assert_int_equal(mailbox_set_flags(mb, 2, MAILBOX_FLAG_ANSWERED, 0,
					   MAILBOX_FLAGS_REMOVE, &modseq2,
					   &error),
			 1);
	assert_true(modseq2 > modseq);
	uint64_t same = 0;
	assert_int_equal(mailbox_set_flags(mb, 2, MAILBOX_FLAG_SEEN, 0,
					   MAILBOX_FLAGS_ADD, &same, &error),
			 1);
	assert_int_equal(same, modseq2);
	/* Unknown UID. */
	assert_int_equal(mailbox_set_flags(mb, 99, MAILBOX_FLAG_SEEN, 0,
					   MAILBOX_FLAGS_ADD, NULL, &error),
			 0);
	mailbox_close(&mb);

	mb = open_mb(f);
	assert_int_equal(mailbox_lookup_uid(mb, 2, &m), 2);
	assert_int_equal(m.flags, MAILBOX_FLAG_SEEN);
	assert_int_equal(m.keywords, 1);
	assert_int_equal(m.modseq, modseq2);
	assert_non_null(strstr(m.name, ":2,Sa"));
	mailbox_close(&mb);
	assert_null(strstr(log_seen, "rebuilt"));
}

static void test_expunge(void **state)
{
	struct fixture *f = *state;
	struct mailbox_message m;
	const char *error = NULL;
	char path[256];

	deliver5(f);
	struct mailbox *mb = open_mb(f);
	assert_int_equal(mailbox_lookup_uid(mb, 3, &m), 3);
	cur_path(f, m.name, path, sizeof(path));
	assert_int_equal(mailbox_expunge(mb, 3, &error), 1);
	assert_false(exists(path));
	assert_int_equal(mailbox_count(mb), 4);
	assert_int_equal(mailbox_lookup_uid(mb, 3, NULL), 0);
	assert_true(mailbox_lookup_seq(mb, 3, &m));
	assert_int_equal(m.uid, 4); /* sequence numbers shifted */
	assert_int_equal(mailbox_expunge(mb, 3, &error), 0);
	mailbox_close(&mb);

	mb = open_mb(f);
	assert_int_equal(mailbox_count(mb), 4);
	assert_int_equal(mailbox_uidnext(mb), 6);
	assert_int_equal(mailbox_lookup_uid(mb, 3, NULL), 0);
	mailbox_close(&mb);

	struct uidlist *list = NULL;
	assert_int_equal(uidlist_read(f->dir, 100, &list, &error), UIDLIST_OK);
	assert_int_equal(uidlist_count(list), 4);
	assert_false(uidlist_lookup_uid(list, 3, NULL));
	uidlist_free(&list);
}

static void test_append(void **state)
{
	struct fixture *f = *state;
	struct mailbox_message m;
	const char *error = NULL;
	static const char msg[] = "Subject: appended\r\n\r\nhello\r\n";
	uint32_t uid = 0;
	char path[256];
	struct stat st;

	deliver5(f);
	struct mailbox *mb = open_mb(f);
	assert_int_equal(mailbox_append(mb, msg, sizeof(msg) - 1, 0,
					MAILBOX_FLAG_SEEN | MAILBOX_FLAG_DRAFT,
					1u << 2, 1000000000, &uid, &error),
			 1);
	assert_int_equal(uid, 6);
	assert_int_equal(mailbox_count(mb), 6);
	assert_int_equal(mailbox_lookup_uid(mb, 6, &m), 6);
	assert_int_equal(m.flags, MAILBOX_FLAG_SEEN | MAILBOX_FLAG_DRAFT);
	assert_int_equal(m.keywords, 1u << 2);
	assert_int_equal(m.date, 1000000000);
	assert_int_equal(m.size, sizeof(msg) - 1);
	assert_non_null(strstr(m.name, ":2,DSc"));
	cur_path(f, m.name, path, sizeof(path));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mtime, 1000000000);

	/* Too big. */
	assert_int_equal(
	    mailbox_append(mb, msg, sizeof(msg) - 1, 4, 0, 0, -1, &uid, &error),
	    -1);
	mailbox_close(&mb);

	mb = open_mb(f);
	assert_int_equal(mailbox_lookup_uid(mb, 6, &m), 6);
	assert_int_equal(m.date, 1000000000);
	assert_int_equal(m.flags, MAILBOX_FLAG_SEEN | MAILBOX_FLAG_DRAFT);
	assert_int_equal(mailbox_count(mb), 6);
	mailbox_close(&mb);
}

static void test_index_deleted(void **state)
{
	struct fixture *f = *state;
	struct snap a, b;
	char path[256];

	prepare(f, &a);
	path_of(f, MAILINDEX_FILE_NAME, path, sizeof(path));
	assert_int_equal(unlink(path), 0);
	path_of(f, MAILINDEX_LOG_NAME, path, sizeof(path));
	unlink(path);
	struct mailbox *mb = open_mb(f);
	snapshot(mb, &b);
	mailbox_close(&mb);
	assert_same(&a, &b);
	assert_non_null(strstr(log_seen, "index rebuilt (no index)"));
}

static void test_log_truncated(void **state)
{
	struct fixture *f = *state;
	struct snap a, b;
	char path[256];
	struct stat st;

	prepare(f, &a);
	path_of(f, MAILINDEX_LOG_NAME, path, sizeof(path));
	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_size > MAILINDEX_LOG_HEADER_SIZE);
	/* Cut inside the last entry, then cut into the header. */
	assert_int_equal(truncate(path, st.st_size - 3), 0);
	struct mailbox *mb = open_mb(f);
	snapshot(mb, &b);
	mailbox_close(&mb);
	assert_same(&a, &b);

	assert_int_equal(truncate(path, 5), 0);
	mb = open_mb(f);
	snapshot(mb, &b);
	mailbox_close(&mb);
	assert_same(&a, &b);
}

static void test_index_garbage(void **state)
{
	struct fixture *f = *state;
	struct snap a, b;
	char path[256];

	prepare(f, &a);
	path_of(f, MAILINDEX_FILE_NAME, path, sizeof(path));
	FILE *fp = fopen(path, "r+");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, 70, SEEK_SET), 0);
	fputs("garbage garbage", fp);
	fclose(fp);
	struct mailbox *mb = open_mb(f);
	snapshot(mb, &b);
	mailbox_close(&mb);
	assert_same(&a, &b);
	assert_non_null(strstr(log_seen, "index rebuilt"));
}

static void test_uidlist_corrupt(void **state)
{
	struct fixture *f = *state;
	const char *error = NULL;
	struct snap a, b;
	char path[256];

	deliver5(f);
	struct mailbox *mb = open_mb(f);
	/* Make UIDs not 1..n so a fresh numbering would differ. */
	assert_int_equal(mailbox_expunge(mb, 1, &error), 1);
	assert_int_equal(mailbox_set_flags(mb, 2, MAILBOX_FLAG_FLAGGED, 0,
					   MAILBOX_FLAGS_ADD, NULL, &error),
			 1);
	snapshot(mb, &a);
	uint32_t uidnext = mailbox_uidnext(mb);
	mailbox_close(&mb);

	path_of(f, UIDLIST_FILE_NAME, path, sizeof(path));
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("mailring-uidlist 1 Vgarbage\n\x01\x02", fp);
	fclose(fp);

	mb = open_mb(f);
	snapshot(mb, &b);
	assert_int_equal(mailbox_uidnext(mb), uidnext);
	mailbox_close(&mb);
	assert_same(&a, &b);
	assert_non_null(strstr(log_seen, "uid list rebuilt (corrupt), 4 UIDs"));

	/* The file was rewritten and is good again. */
	struct uidlist *list = NULL;
	assert_int_equal(uidlist_read(f->dir, 100, &list, &error), UIDLIST_OK);
	assert_int_equal(uidlist_count(list), 4);
	assert_int_equal(uidlist_uidvalidity(list), a.uidvalidity);
	uidlist_free(&list);

	/* Missing entirely: same result. */
	assert_int_equal(unlink(path), 0);
	mb = open_mb(f);
	snapshot(mb, &b);
	mailbox_close(&mb);
	assert_same(&a, &b);
}

static void test_renamed_behind(void **state)
{
	struct fixture *f = *state;
	struct mailbox_message m;
	char from[256], to[512];

	deliver5(f);
	struct mailbox *mb = open_mb(f);
	assert_int_equal(mailbox_lookup_uid(mb, 4, &m), 4);
	uint64_t modseq = mailbox_highest_modseq(mb);
	cur_path(f, m.name, from, sizeof(from));
	mailbox_close(&mb);
	log_seen[0] = '\0';

	char *colon = strrchr(from, ':');
	assert_non_null(colon);
	snprintf(to, sizeof(to), "%.*s:2,RSb", (int)(colon - from), from);
	assert_int_equal(rename(from, to), 0);

	mb = open_mb(f);
	assert_int_equal(mailbox_lookup_uid(mb, 4, &m), 4);
	assert_int_equal(m.flags, MAILBOX_FLAG_SEEN | MAILBOX_FLAG_ANSWERED);
	assert_int_equal(m.keywords, 1u << 1);
	assert_true(m.modseq > modseq);
	mailbox_close(&mb);
	assert_null(strstr(log_seen, "rebuilt"));

	/* Renamed between our sync and a STORE: maildir_set_flags finds it. */
	const char *error = NULL;
	mb = open_mb(f);
	assert_int_equal(mailbox_lookup_uid(mb, 4, &m), 4);
	cur_path(f, m.name, from, sizeof(from));
	colon = strrchr(from, ':');
	snprintf(to, sizeof(to), "%.*s:2,P", (int)(colon - from), from);
	assert_int_equal(rename(from, to), 0);
	assert_int_equal(mailbox_set_flags(mb, 4, MAILBOX_FLAG_FLAGGED, 0,
					   MAILBOX_FLAGS_ADD, NULL, &error),
			 1);
	assert_int_equal(mailbox_lookup_uid(mb, 4, &m), 4);
	assert_int_equal(m.flags, MAILBOX_FLAG_FLAGGED);
	assert_non_null(strstr(m.name, ":2,FP")); /* P kept */
	mailbox_close(&mb);
}

static void test_added_removed_behind(void **state)
{
	struct fixture *f = *state;
	struct mailbox_message m;
	struct maildir_error merr;
	char name[MAILDIR_NAME_MAX + 1];
	char path[256];

	deliver5(f);
	struct mailbox *mb = open_mb(f);
	assert_int_equal(mailbox_lookup_uid(mb, 2, &m), 2);
	cur_path(f, m.name, path, sizeof(path));
	mailbox_close(&mb);
	log_seen[0] = '\0';

	assert_int_equal(unlink(path), 0);
	assert_int_equal(maildir_deliver(f->dir, "X: y\r\n\r\nz\r\n", 11, 0,
					 NULL, name, sizeof(name), &merr),
			 1);

	mb = open_mb(f);
	assert_int_equal(mailbox_count(mb), 5);
	assert_int_equal(mailbox_lookup_uid(mb, 2, NULL), 0);
	assert_int_equal(mailbox_lookup_uid(mb, 6, &m), 5);
	assert_int_equal(m.size, 11);
	assert_int_equal(mailbox_uidnext(mb), 7);
	assert_true(mailbox_lookup_seq(mb, 2, &m));
	assert_int_equal(m.uid, 3);

	/* Behind an open view: refresh sees it. */
	assert_int_equal(maildir_deliver(f->dir, "X: y\r\n\r\nw\r\n", 11, 0,
					 NULL, name, sizeof(name), &merr),
			 1);
	const char *error = NULL;
	assert_int_equal(mailbox_refresh(mb, &error), 1);
	assert_int_equal(mailbox_count(mb), 6);
	assert_int_equal(mailbox_lookup_uid(mb, 7, NULL), 6);
	mailbox_close(&mb);
	assert_null(strstr(log_seen, "rebuilt"));
}

static void test_resync(void **state)
{
	struct fixture *f = *state;
	const char *error = NULL;
	struct snap a, b;

	prepare(f, &a);
	assert_int_equal(mailbox_resync(f->dir, NULL, &error), 1);
	assert_non_null(strstr(log_seen, "index rebuilt (resync)"));
	struct mailbox *mb = open_mb(f);
	snapshot(mb, &b);
	mailbox_close(&mb);
	assert_same(&a, &b);
}

static void test_dump(void **state)
{
	struct fixture *f = *state;
	const char *error = NULL;
	struct snap a;
	char *text = NULL;
	size_t size = 0;
	struct mailbox_message m;

	assert_int_equal(mailbox_index_dump(f->dir, stdout, &error), 0);
	prepare(f, &a);
	struct mailbox *mb = open_mb(f);
	assert_int_equal(mailbox_lookup_uid(mb, 2, &m), 2);
	char base[MAILDIR_NAME_MAX + 1];
	snprintf(base, sizeof(base), "%s", m.name);
	*strchr(base, ':') = '\0';
	uint64_t modseq2 = m.modseq, size2 = m.size;
	uint32_t uv = mailbox_uidvalidity(mb);
	uint64_t hms = mailbox_highest_modseq(mb);
	mailbox_close(&mb);

	FILE *out = open_memstream(&text, &size);
	assert_non_null(out);
	assert_int_equal(mailbox_index_dump(f->dir, out, &error), 1);
	fclose(out);

	char want[512];
	snprintf(want, sizeof(want),
		 "uidvalidity=%u uidnext=6 highest_modseq=%llu messages=5\n",
		 uv, (unsigned long long)hms);
	assert_non_null(strstr(text, want));
	snprintf(want, sizeof(want), "\n2 2 (\\Seen \\Flagged) b %llu %llu ",
		 (unsigned long long)modseq2, (unsigned long long)size2);
	assert_non_null(strstr(text, want));
	snprintf(want, sizeof(want), " %s\n", base);
	assert_non_null(strstr(text, want));
	assert_non_null(strstr(text, "\n4 4 (\\Deleted) - "));
	assert_non_null(strstr(text, "\n1 1 () - 1 "));
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_open_missing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deliver_open, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_set_flags, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_expunge, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_append, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_index_deleted, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_log_truncated, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_index_garbage, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_uidlist_corrupt, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_renamed_behind, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_added_removed_behind, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_resync, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dump, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
