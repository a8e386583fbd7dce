#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth_fields.h"
#include "auth/passdb.h"
#include "auth/passwd_file.h"

static struct passwd_table *parse(const char *text, char **error_r)
{
	return passwd_table_parse(text, strlen(text), "users", NULL, error_r);
}

static const char *field(const struct passwd_field *f, size_t n,
			 const char *key, bool *found_r)
{
	*found_r = false;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(f[i].key, key) == 0) {
			*found_r = true;
			return f[i].value;
		}
	}
	return NULL;
}

static void expect_field(const struct passwd_entry *e, const char *key,
			 const char *value)
{
	bool found;
	const char *v = field(e->fields, e->field_count, key, &found);

	if (!found)
		print_error("field %s missing\n", key);
	assert_true(found);
	if (value == NULL)
		assert_null(v);
	else
		assert_string_equal(v, value);
}

static void expect_parse_error(const char *text, const char *message)
{
	char *error = NULL;
	struct passwd_table *t = parse(text, &error);

	assert_null(t);
	assert_non_null(error);
	if (strcmp(error, message) != 0)
		print_error("got '%s', want '%s'\n", error, message);
	assert_string_equal(error, message);
	free(error);
}

static void test_full_line(void **state)
{
	char *error = NULL;
	const char *text =
	    "# mailring users\n"
	    "\n"
	    "alice@example.com:{PLAIN}pw:1000:1001:Alice A:/home/alice:"
	    "/bin/false:nologin reason=Moved host=10.0.0.5 port=143 "
	    "user=canonical destuser=x pass=secret nopassword proxy "
	    "director_tag=pool1 userdb_quota_rule=*:storage=1G "
	    "userdb_mail=maildir:~/Maildir\n";
	struct passwd_table *t = parse(text, &error);
	(void)state;

	assert_non_null(t);
	assert_null(error);
	assert_int_equal(passwd_table_count(t), 1);
	const struct passwd_entry *e =
	    passwd_table_lookup(t, "alice@example.com");
	assert_non_null(e);
	assert_string_equal(e->user, "alice@example.com");
	assert_string_equal(e->password, "{PLAIN}pw");
	assert_string_equal(e->uid, "1000");
	assert_string_equal(e->gid, "1001");
	assert_string_equal(e->gecos, "Alice A");
	assert_string_equal(e->home, "/home/alice");
	assert_string_equal(e->shell, "/bin/false");
	assert_int_equal(e->line, 3);
	assert_int_equal(e->field_count, 10);
	expect_field(e, "nologin", NULL);
	expect_field(e, "reason", "Moved");
	expect_field(e, "host", "10.0.0.5");
	expect_field(e, "port", "143");
	expect_field(e, "user", "canonical");
	expect_field(e, "destuser", "x");
	expect_field(e, "pass", "secret");
	expect_field(e, "nopassword", NULL);
	expect_field(e, "proxy", NULL);
	expect_field(e, "director_tag", "pool1");
	/* userdb_ fields kept apart, prefix stripped, ':' and '=' in values */
	assert_int_equal(e->userdb_field_count, 2);
	assert_string_equal(e->userdb_fields[0].key, "quota_rule");
	assert_string_equal(e->userdb_fields[0].value, "*:storage=1G");
	assert_string_equal(e->userdb_fields[1].key, "mail");
	assert_string_equal(e->userdb_fields[1].value, "maildir:~/Maildir");
	/* exact lookups by default */
	assert_null(passwd_table_lookup(t, "Alice@example.com"));
	assert_null(passwd_table_lookup(t, "alice"));
	assert_null(passwd_table_lookup(t, ""));
	passwd_table_unref(&t);
	assert_null(t);
}

static void test_short_lines(void **state)
{
	char *error = NULL;
	const char *text = "a:{PLAIN}x\n"
			   "b\n"
			   "c:\n"
			   "d:pw:::::\n"
			   "e:pw::::/home/e\r\n"
			   "   \t \n"
			   "#comment:with:colons\n"
			   "f:pw:::::: proxy  host=h  \n"
			   "g:pw:1:2\n"
			   "last:pw";
	struct passwd_table *t = parse(text, &error);
	const struct passwd_entry *e;
	(void)state;

	assert_non_null(t);
	assert_int_equal(passwd_table_count(t), 8);
	e = passwd_table_lookup(t, "a");
	assert_string_equal(e->password, "{PLAIN}x");
	assert_null(e->uid);
	assert_int_equal(e->field_count, 0);
	assert_null(e->fields);
	e = passwd_table_lookup(t, "b");
	assert_non_null(e);
	assert_null(e->password);
	e = passwd_table_lookup(t, "c");
	assert_null(e->password);
	e = passwd_table_lookup(t, "d");
	assert_string_equal(e->password, "pw");
	assert_null(e->home);
	assert_int_equal(e->field_count, 0);
	e = passwd_table_lookup(t, "e");
	assert_string_equal(e->home, "/home/e"); /* CR dropped */
	e = passwd_table_lookup(t, "f");
	assert_int_equal(e->field_count, 2);
	expect_field(e, "proxy", NULL);
	expect_field(e, "host", "h");
	e = passwd_table_lookup(t, "g");
	assert_string_equal(e->uid, "1");
	assert_string_equal(e->gid, "2");
	e = passwd_table_lookup(t, "last");
	assert_string_equal(e->password, "pw");
	assert_int_equal(e->line, 10);
	passwd_table_unref(&t);

	/* empty input and comments only */
	t = parse("", &error);
	assert_non_null(t);
	assert_int_equal(passwd_table_count(t), 0);
	assert_null(passwd_table_lookup(t, "a"));
	passwd_table_unref(&t);
	t = parse("# nothing\n\n", &error);
	assert_int_equal(passwd_table_count(t), 0);
	passwd_table_unref(&t);
}

static void test_dovecot_compat(void **state)
{
	char *error = NULL;
	/* old format: empty 8th field, then the mail location */
	const char *text = "old:pw:1:1::/home/old:/bin/sh::maildir:~/M:x\n"
			   "pam1:abccBcrPOxnLU[13]\n"
			   "pam2:1a1dc91c907325c69271ddf0c944bc72[34]\n"
			   "notpam:{PLAIN}x[13]\n";
	struct passwd_table *t = parse(text, &error);
	const struct passwd_entry *e;
	(void)state;

	assert_non_null(t);
	e = passwd_table_lookup(t, "old");
	assert_int_equal(e->field_count, 0);
	assert_int_equal(e->userdb_field_count, 1);
	assert_string_equal(e->userdb_fields[0].key, "mail");
	assert_string_equal(e->userdb_fields[0].value, "maildir:~/M:x");
	e = passwd_table_lookup(t, "pam1");
	assert_string_equal(e->password, "{CRYPT}abccBcrPOxnLU");
	e = passwd_table_lookup(t, "pam2");
	assert_string_equal(e->password,
			    "{PLAIN-MD5}1a1dc91c907325c69271ddf0c944bc72");
	e = passwd_table_lookup(t, "notpam");
	assert_string_equal(e->password, "{PLAIN}x[13]");
	passwd_table_unref(&t);
}

static void test_case_insensitive(void **state)
{
	struct passwd_file_settings set;
	char *error = NULL;
	const char *text = "Bob@Example.COM:pw\nbob2:pw\n";
	(void)state;

	passwd_file_settings_init(&set);
	set.case_insensitive = true;
	struct passwd_table *t =
	    passwd_table_parse(text, strlen(text), "u", &set, &error);
	assert_non_null(t);
	const struct passwd_entry *e =
	    passwd_table_lookup(t, "bob@example.com");
	assert_non_null(e);
	assert_string_equal(e->user, "Bob@Example.COM");
	assert_non_null(passwd_table_lookup(t, "BOB@EXAMPLE.COM"));
	assert_non_null(passwd_table_lookup(t, "BOB2"));
	passwd_table_unref(&t);

	/* folded duplicates are duplicates */
	t = passwd_table_parse("a:x\nA:y\n", 8, "u", &set, &error);
	assert_null(t);
	assert_string_equal(error, "u:2: user A exists more than once (first "
				   "on line 1)");
	free(error);
}

static void test_many_users(void **state)
{
	size_t n = 5000, cap = n * 32, len = 0;
	char *text = malloc(cap);
	char *error = NULL;
	(void)state;

	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(text + len, cap - len,
					"user%zu:{PLAIN}pw%zu\n", i, i);
	struct passwd_table *t =
	    passwd_table_parse(text, len, "big", NULL, &error);
	assert_non_null(t);
	assert_int_equal(passwd_table_count(t), n);
	for (size_t i = 0; i < n; i += 7) {
		char user[32], pw[32];
		snprintf(user, sizeof(user), "user%zu", i);
		snprintf(pw, sizeof(pw), "{PLAIN}pw%zu", i);
		const struct passwd_entry *e = passwd_table_lookup(t, user);
		assert_non_null(e);
		assert_string_equal(e->password, pw);
		assert_int_equal(e->line, i + 1);
	}
	assert_null(passwd_table_lookup(t, "user5000"));
	passwd_table_unref(&t);
	free(text);
}

static void test_malformed(void **state)
{
	(void)state;
	expect_parse_error("ok:x\n:nouser\n", "users:2: missing user name");
	expect_parse_error("a b:x\n", "users:1: user name contains a character "
				      "that can never log in (space, quote, "
				      "backslash, control or 8-bit)");
	expect_parse_error("a\"b:x\n",
			   "users:1: user name contains a character "
			   "that can never log in (space, quote, "
			   "backslash, control or 8-bit)");
	expect_parse_error("\xc3\xa9:x\n",
			   "users:1: user name contains a character "
			   "that can never log in (space, quote, "
			   "backslash, control or 8-bit)");
	expect_parse_error("a:x:::::: =v\n",
			   "users:1: extra field without a name");
	expect_parse_error("a:x:::::: userdb_=v\n",
			   "users:1: extra field without a name");
	expect_parse_error("a:x\nb:y\na:z\n",
			   "users:3: user a exists more than once (first on "
			   "line 1)");
	expect_parse_error("a:x\nb:y\x01z\n",
			   "users:2: control character in line");
	expect_parse_error("a:x\nb:y\rz\n",
			   "users:2: control character in line");
	expect_parse_error("a:x\nb:y\x7f\n",
			   "users:2: control character in line");

	/* NUL inside a line */
	char *error = NULL;
	static const char nul[] = "a:x\nb:y\0z\nc:w\n";
	struct passwd_table *t =
	    passwd_table_parse(nul, sizeof(nul) - 1, "users", NULL, &error);
	assert_null(t);
	assert_string_equal(error, "users:2: NUL byte in line");
	free(error);

	/* a TAB is data, not an error */
	t = parse("a:x:::::: reason=a\tb\n", &error);
	assert_non_null(t);
	passwd_table_unref(&t);
}

static void test_limits(void **state)
{
	struct passwd_file_settings set;
	char *error = NULL;
	char line[64];
	(void)state;

	passwd_file_settings_init(&set);
	set.max_line_len = 20;
	/* exactly at the limit (the line end does not count) */
	memset(line, 'a', 20);
	line[0] = 'u';
	line[1] = ':';
	line[20] = '\n';
	line[21] = '\0';
	struct passwd_table *t =
	    passwd_table_parse(line, strlen(line), "f", &set, &error);
	assert_non_null(t);
	passwd_table_unref(&t);
	/* CRLF: the CR does not count either */
	line[20] = '\r';
	line[21] = '\n';
	line[22] = '\0';
	t = passwd_table_parse(line, strlen(line), "f", &set, &error);
	assert_non_null(t);
	passwd_table_unref(&t);
	/* one over */
	memset(line, 'a', 21);
	line[0] = 'u';
	line[1] = ':';
	line[21] = '\n';
	line[22] = '\0';
	t = passwd_table_parse(line, strlen(line), "f", &set, &error);
	assert_null(t);
	assert_string_equal(error, "f:1: line too long (21 bytes, max 20)");
	free(error);
	/* the last line without a newline is checked too */
	t = passwd_table_parse("ok:x\naaaaaaaaaaaaaaaaaaaaaaaaaaa", 32, "f",
			       &set, &error);
	assert_null(t);
	assert_string_equal(error, "f:2: line too long (27 bytes, max 20)");
	free(error);

	/* file size */
	set.max_line_len = 0;
	set.max_file_size = 10;
	t = passwd_table_parse("abcdefghijk", 11, "f", &set, &error);
	assert_null(t);
	assert_string_equal(error, "f: file too large (11 bytes, max 10)");
	free(error);
	t = passwd_table_parse("abcdef:hij", 10, "f", &set, &error);
	assert_non_null(t);
	passwd_table_unref(&t);
}

/* ---- files on disk ------------------------------------------------------ */

struct tmpdir {
	char dir[64];
	char path[128];
	char tmp[128];
};

static int setup_dir(void **state)
{
	struct tmpdir *d = calloc(1, sizeof(*d));

	snprintf(d->dir, sizeof(d->dir), "/tmp/mr_test_pwf_XXXXXX");
	assert_non_null(mkdtemp(d->dir));
	snprintf(d->path, sizeof(d->path), "%s/users", d->dir);
	snprintf(d->tmp, sizeof(d->tmp), "%s/users.tmp", d->dir);
	*state = d;
	return 0;
}

static int teardown_dir(void **state)
{
	struct tmpdir *d = *state;

	unlink(d->path);
	unlink(d->tmp);
	rmdir(d->dir);
	free(d);
	return 0;
}

/* Writes atomically (new inode), as admins' tools do. */
static void write_file(struct tmpdir *d, const char *text)
{
	FILE *f = fopen(d->tmp, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(d->tmp, d->path), 0);
}

/* Rewrites in place (same inode). */
static void rewrite_in_place(struct tmpdir *d, const char *text)
{
	FILE *f = fopen(d->path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static const char *password_of(struct passwd_file *pf, const char *user)
{
	static char buf[256];
	struct passwd_table *t = passwd_file_get_table(pf);
	const struct passwd_entry *e = passwd_table_lookup(t, user);
	const char *ret = NULL;

	if (e != NULL && e->password != NULL) {
		snprintf(buf, sizeof(buf), "%s", e->password);
		ret = buf;
	}
	passwd_table_unref(&t);
	return ret;
}

static void test_open_errors(void **state)
{
	struct tmpdir *d = *state;
	char *error = NULL;

	assert_null(passwd_file_open(d->path, NULL, &error));
	assert_non_null(error);
	assert_non_null(strstr(error, "open() failed"));
	free(error);
	assert_null(passwd_file_open(d->dir, NULL, &error));
	assert_non_null(strstr(error, "not a regular file"));
	free(error);
	write_file(d, "a:x\na:y\n");
	assert_null(passwd_file_open(d->path, NULL, &error));
	assert_non_null(
	    strstr(error, "/users:2: user a exists more than once"));
	free(error);
}

static void test_reload(void **state)
{
	struct tmpdir *d = *state;
	struct passwd_file_settings set;
	char *error = NULL;
	uint64_t now = 1000;

	passwd_file_settings_init(&set);
	set.refresh_interval_ms = 500;
	write_file(d, "alice:{PLAIN}one\n");
	struct passwd_file *pf = passwd_file_open(d->path, &set, &error);
	assert_non_null(pf);
	assert_int_equal(passwd_file_generation(pf), 1);
	assert_string_equal(password_of(pf, "alice"), "{PLAIN}one");

	/* first check: stat, nothing changed */
	assert_int_equal(passwd_file_refresh(pf, now, &error), 0);
	assert_null(error);

	/* a change within the interval is not seen */
	write_file(d, "alice:{PLAIN}two\nbob:{PLAIN}b\n");
	assert_int_equal(passwd_file_refresh(pf, now + 100, &error), 0);
	assert_string_equal(password_of(pf, "alice"), "{PLAIN}one");
	/* after the interval it is */
	assert_int_equal(passwd_file_refresh(pf, now + 600, &error), 1);
	assert_int_equal(passwd_file_generation(pf), 2);
	assert_string_equal(password_of(pf, "alice"), "{PLAIN}two");
	assert_string_equal(password_of(pf, "bob"), "{PLAIN}b");

	/* a reader holding the old table keeps it across a swap */
	struct passwd_table *held = passwd_file_get_table(pf);
	rewrite_in_place(d, "carol:{PLAIN}c\n");
	assert_int_equal(passwd_file_refresh(pf, now + 1200, &error), 1);
	assert_null(password_of(pf, "alice"));
	assert_string_equal(password_of(pf, "carol"), "{PLAIN}c");
	const struct passwd_entry *e = passwd_table_lookup(held, "alice");
	assert_non_null(e);
	assert_string_equal(e->password, "{PLAIN}two");
	passwd_table_unref(&held);

	/* a broken file keeps the old table and is reported once */
	write_file(d, "carol:{PLAIN}c2\nbad line:x\n");
	assert_int_equal(passwd_file_refresh(pf, now + 1800, &error), -1);
	assert_non_null(error);
	assert_non_null(strstr(error, "/users:2: user name contains"));
	free(error);
	assert_string_equal(password_of(pf, "carol"), "{PLAIN}c");
	assert_int_equal(passwd_file_generation(pf), 3);
	assert_int_equal(passwd_file_refresh(pf, now + 2400, &error), 0);
	assert_null(error);
	assert_string_equal(password_of(pf, "carol"), "{PLAIN}c");

	/* fixing it installs the new one */
	write_file(d, "carol:{PLAIN}c3\n");
	assert_int_equal(passwd_file_refresh(pf, now + 3000, &error), 1);
	assert_string_equal(password_of(pf, "carol"), "{PLAIN}c3");
	assert_int_equal(passwd_file_generation(pf), 4);

	/* a vanished file keeps the users and is reported once */
	unlink(d->path);
	assert_int_equal(passwd_file_refresh(pf, now + 3600, &error), -1);
	assert_non_null(strstr(error, "stat() failed"));
	free(error);
	assert_int_equal(passwd_file_refresh(pf, now + 4200, &error), 0);
	assert_string_equal(password_of(pf, "carol"), "{PLAIN}c3");
	write_file(d, "dave:{PLAIN}d\n");
	assert_int_equal(passwd_file_refresh(pf, now + 4800, &error), 1);
	assert_string_equal(password_of(pf, "dave"), "{PLAIN}d");

	passwd_file_close(&pf);
	assert_null(pf);
}

struct stress {
	struct passwd_file *pf;
	atomic_bool stop;
	atomic_ulong lookups;
};

static void *stress_reader(void *arg)
{
	struct stress *s = arg;

	while (!atomic_load(&s->stop)) {
		struct passwd_table *t = passwd_file_get_table(s->pf);
		const struct passwd_entry *e = passwd_table_lookup(t, "u");
		assert_non_null(e);
		assert_int_equal(strncmp(e->password, "{PLAIN}", 7), 0);
		passwd_table_unref(&t);
		atomic_fetch_add(&s->lookups, 1);
	}
	return NULL;
}

static void test_reload_concurrent(void **state)
{
	struct tmpdir *d = *state;
	struct passwd_file_settings set;
	struct stress s;
	pthread_t th[2];
	char *error = NULL;
	char text[256];

	passwd_file_settings_init(&set);
	set.refresh_interval_ms = 0;
	write_file(d, "u:{PLAIN}0\n");
	s.pf = passwd_file_open(d->path, &set, &error);
	assert_non_null(s.pf);
	atomic_init(&s.stop, false);
	atomic_init(&s.lookups, 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(
		    pthread_create(&th[i], NULL, stress_reader, &s), 0);
	int reloads = 0;
	for (int i = 1; i <= 200; i++) {
		/* the size changes every time: within one timestamp tick, a
		 * recycled inode with the same size would not be noticed */
		snprintf(text, sizeof(text), "u:{PLAIN}%0*d\n", i, i);
		write_file(d, text);
		int r = passwd_file_refresh(s.pf, (uint64_t)i, &error);
		assert_int_not_equal(r, -1);
		reloads += r;
	}
	atomic_store(&s.stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(reloads, 200);
	snprintf(text, sizeof(text), "{PLAIN}%0*d", 200, 200);
	assert_string_equal(password_of(s.pf, "u"), text);
	assert_true(atomic_load(&s.lookups) > 0);
	passwd_file_close(&s.pf);
}

static void test_driver(void **state)
{
	struct tmpdir *d = *state;
	const struct passdb_driver *drv = passdb_driver_find("passwd-file");
	void *ctx = NULL;
	char *error = NULL;
	char args[256];
	struct passdb_entry entry;
	struct passdb_request req = {
	    .user = "Alice@example.com", .service = "imap", .now_ms = 1};

	assert_non_null(drv);
	assert_null(passdb_driver_find("ldap"));
	assert_null(passdb_driver_find(NULL));
	write_file(d, "alice:{PLAIN}pw:1000:1000::/home/alice::host=h "
		      "userdb_mail=maildir:~/M\n");

	/* argument errors */
	assert_int_equal(drv->init("", &ctx, &error), -1);
	assert_string_equal(error, "passwd-file: no file path given");
	free(error);
	assert_int_equal(drv->init("scheme=NOPE /x", &ctx, &error), -1);
	assert_string_equal(error, "passwd-file: unknown scheme: NOPE");
	free(error);
	assert_int_equal(drv->init("/a /b", &ctx, &error), -1);
	assert_string_equal(error, "passwd-file: unexpected argument: /b");
	free(error);
	assert_int_equal(drv->init("username_format=%x /a", &ctx, &error), -1);
	free(error);

	snprintf(args, sizeof(args),
		 "scheme=SHA512-CRYPT username_format=%%Ln refresh_ms=0 %s",
		 d->path);
	assert_int_equal(drv->init(args, &ctx, &error), 0);
	assert_int_equal(drv->lookup(ctx, &req, &entry, &error),
			 PASSDB_USER_FOUND);
	assert_string_equal(entry.password, "{PLAIN}pw");
	assert_string_equal(entry.default_scheme, "SHA512-CRYPT");
	assert_string_equal(auth_fields_get(entry.fields, "host"), "h");
	assert_string_equal(auth_fields_get(entry.userdb_fields, "mail"),
			    "maildir:~/M");
	assert_string_equal(auth_fields_get(entry.userdb_fields, "home"),
			    "/home/alice");
	assert_string_equal(auth_fields_get(entry.userdb_fields, "uid"),
			    "1000");
	assert_null(entry.warning);
	passdb_entry_clear(&entry);
	uint64_t gen = drv->generation(ctx);

	req.user = "bob";
	assert_int_equal(drv->lookup(ctx, &req, &entry, &error),
			 PASSDB_USER_UNKNOWN);
	passdb_entry_clear(&entry);

	/* a broken reload: the lookup still works, with a warning */
	write_file(d, "alice:{PLAIN}new\n:broken\n");
	req.user = "alice";
	req.now_ms = 2;
	assert_int_equal(drv->lookup(ctx, &req, &entry, &error),
			 PASSDB_USER_FOUND);
	assert_string_equal(entry.password, "{PLAIN}pw");
	assert_non_null(entry.warning);
	assert_non_null(strstr(entry.warning, "missing user name"));
	passdb_entry_clear(&entry);
	assert_int_equal(drv->generation(ctx), gen);
	write_file(d, "alice:{PLAIN}new\n");
	req.now_ms = 3;
	assert_int_equal(drv->lookup(ctx, &req, &entry, &error),
			 PASSDB_USER_FOUND);
	assert_string_equal(entry.password, "{PLAIN}new");
	assert_null(entry.warning);
	passdb_entry_clear(&entry);
	assert_int_not_equal(drv->generation(ctx), gen);
	drv->deinit(&ctx);
	assert_null(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_full_line),
	    cmocka_unit_test(test_short_lines),
	    cmocka_unit_test(test_dovecot_compat),
	    cmocka_unit_test(test_case_insensitive),
	    cmocka_unit_test(test_many_users),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test_setup_teardown(test_open_errors, setup_dir,
					    teardown_dir),
	    cmocka_unit_test_setup_teardown(test_reload, setup_dir,
					    teardown_dir),
	    cmocka_unit_test_setup_teardown(test_reload_concurrent, setup_dir,
					    teardown_dir),
	    cmocka_unit_test_setup_teardown(test_driver, setup_dir,
					    teardown_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
