#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "log.h"
#include "str.h"
#include "xmalloc.h"

/* ---- capture of log lines ---- */

#define CAP_MAX 64
static char cap_lines[CAP_MAX][LOG_LINE_MAX];
static enum log_level cap_levels[CAP_MAX];
static size_t cap_count;

static void capture(enum log_level level, const char *line, void *context)
{
	(void)context;
	if (cap_count < CAP_MAX) {
		size_t n = strlen(line);
		assert_true(n < LOG_LINE_MAX);
		memcpy(cap_lines[cap_count], line, n + 1);
		cap_levels[cap_count] = level;
	}
	cap_count++;
}

static uint64_t fake_mono_msecs;
static uint64_t fake_mono(void)
{
	return fake_mono_msecs;
}

static void fake_realtime(struct timespec *ts_r)
{
	ts_r->tv_sec = 1795486864; /* 2026-11-24T02:21:04Z */
	ts_r->tv_nsec = 123456789;
}

static int setup(void **state)
{
	(void)state;
	log_init("mailring-test", LOG_LEVEL_DEBUG);
	log_set_timestamps(false);
	log_set_callback(capture, NULL);
	log_set_clocks(fake_mono, NULL);
	fake_mono_msecs = 1000000;
	cap_count = 0;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	log_set_callback(NULL, NULL);
	log_set_clocks(NULL, NULL);
	log_set_timestamps(true);
	log_set_fd(STDERR_FILENO);
	log_set_level(LOG_LEVEL_INFO);
	return 0;
}

static struct sockaddr_in sin4(const char *addr)
{
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(143);
	assert_int_equal(inet_pton(AF_INET, addr, &sin.sin_addr), 1);
	return sin;
}

static struct sockaddr_in6 sin6(const char *addr)
{
	struct sockaddr_in6 sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, addr, &sin.sin6_addr), 1);
	return sin;
}

/* ---- tests ---- */

static void test_plain_lines(void **state)
{
	(void)state;
	log_info("hello %d", 42);
	log_debug("dbg");
	log_notice("note");
	log_warnx("careful");
	log_error("broken %s", "thing");
	assert_int_equal(cap_count, 5);
	assert_string_equal(cap_lines[0], "mailring-test: info: hello 42");
	assert_string_equal(cap_lines[1], "mailring-test: debug: dbg");
	assert_string_equal(cap_lines[2], "mailring-test: notice: note");
	assert_string_equal(cap_lines[3], "mailring-test: warning: careful");
	assert_string_equal(cap_lines[4], "mailring-test: error: broken thing");
	assert_int_equal(cap_levels[0], LOG_LEVEL_INFO);
	assert_int_equal(cap_levels[4], LOG_LEVEL_ERROR);

	/* free text cannot break the line */
	log_info("client said %s", "a\r\nb\tc");
	assert_string_equal(
	    cap_lines[5],
	    "mailring-test: info: client said a\\x0d\\x0ab\\x09c");
}

static void test_levels(void **state)
{
	enum log_level level;
	(void)state;

	log_set_level(LOG_LEVEL_WARNING);
	log_debug("no");
	log_info("no");
	log_notice("no");
	log_warnx("yes");
	assert_int_equal(cap_count, 1);
	assert_false(log_level_enabled(LOG_LEVEL_INFO));
	assert_true(log_level_enabled(LOG_LEVEL_ERROR));
	assert_true(log_level_enabled(LOG_LEVEL_FATAL));
	log_set_level(LOG_LEVEL_FATAL);
	log_error("no");
	assert_int_equal(cap_count, 1);

	assert_int_equal(log_level_parse("INFO", &level), 0);
	assert_int_equal(level, LOG_LEVEL_INFO);
	assert_int_equal(log_level_parse("warn", &level), 0);
	assert_int_equal(level, LOG_LEVEL_WARNING);
	assert_int_equal(log_level_parse("debug", &level), 0);
	assert_int_equal(level, LOG_LEVEL_DEBUG);
	assert_int_equal(log_level_parse("verbose", &level), -1);
	assert_int_equal(log_level_parse("", &level), -1);
	assert_int_equal(log_level_parse(NULL, &level), -1);
	assert_string_equal(log_level_name(LOG_LEVEL_NOTICE), "notice");
	assert_string_equal(log_level_name((enum log_level)99), "fatal");
}

static void test_warn_errno(void **state)
{
	(void)state;
	errno = ENOENT;
	log_warn("open %s", "/nonexistent");
	assert_int_equal(errno, ENOENT); /* logging keeps errno */
	assert_string_equal(cap_lines[0], "mailring-test: warning: open "
					  "/nonexistent: No such file or "
					  "directory");
	struct log_ctx ctx;
	log_ctx_init(&ctx);
	log_ctx_set_session(&ctx, "S1");
	errno = ECONNRESET;
	log_ctx_warn(&ctx, "read");
	assert_string_equal(cap_lines[1], "mailring-test: warning: read: "
					  "Connection reset by peer "
					  "session=<S1>");
}

static void test_timestamp_and_ident(void **state)
{
	(void)state;
	log_set_clocks(fake_mono, fake_realtime);
	log_set_timestamps(true);
	log_init("mailring-proxy", LOG_LEVEL_DEBUG);
	log_info("started");
	assert_string_equal(cap_lines[0], "2026-11-24T02:21:04.123Z "
					  "mailring-proxy: info: started");

	char longname[200];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	log_set_timestamps(false);
	log_init(longname, LOG_LEVEL_DEBUG);
	log_info("x");
	assert_int_equal(strlen(cap_lines[1]),
			 LOG_IDENT_MAX - 1 + strlen(": info: x"));
	log_init(NULL, LOG_LEVEL_DEBUG);
	log_info("x");
	assert_string_equal(cap_lines[2], "mailring: info: x");
}

static void test_fields(void **state)
{
	struct log_fields f;
	(void)state;

	struct sockaddr_in rip = sin4("1.2.3.4");
	log_fields_init(&f);
	log_field_str(&f, "user", "alice");
	log_field_atom(&f, "method", "PLAIN");
	log_field_ip(&f, "rip", (const struct sockaddr *)&rip);
	log_field_str(&f, "session", "abc");
	log_field_uint(&f, "in", 18446744073709551615ULL);
	log_field_int(&f, "delta", -5);
	log_event(LOG_LEVEL_INFO, "Login", &f);
	assert_string_equal(cap_lines[0],
			    "mailring-test: info: Login: user=<alice> "
			    "method=PLAIN rip=1.2.3.4 session=<abc> "
			    "in=18446744073709551615 delta=-5");

	log_event(LOG_LEVEL_INFO, "Ping", NULL);
	log_fields_init(&f);
	log_event(LOG_LEVEL_INFO, "Pong", &f);
	assert_string_equal(cap_lines[1], "mailring-test: info: Ping");
	assert_string_equal(cap_lines[2], "mailring-test: info: Pong");

	/* addresses */
	struct sockaddr_in6 v6 = sin6("2001:db8::1");
	struct sockaddr_in6 mapped = sin6("::ffff:10.1.2.3");
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	log_fields_init(&f);
	log_field_ip(&f, "a", (const struct sockaddr *)&v6);
	log_field_ip(&f, "b", (const struct sockaddr *)&mapped);
	log_field_ip(&f, "c", (const struct sockaddr *)&un);
	log_field_ip(&f, "d", NULL);
	assert_string_equal(f.buf, "a=2001:db8::1 b=10.1.2.3 c=local d=?");
}

static void test_field_sanitize(void **state)
{
	struct log_fields f;
	(void)state;

	log_fields_init(&f);
	/* CR, LF, NUL, 8-bit, '>' and '\' from a client */
	log_field_slice(&f, "user", str_from("a\r\nb\0c\xff>x\\", 10));
	assert_string_equal(f.buf, "user=<a\\x0d\\x0ab\\x00c\\xff\\x3ex\\x5c>");

	/* a client cannot forge a second field */
	log_fields_init(&f);
	log_field_str(&f, "user", "a> session=<fake");
	assert_string_equal(f.buf, "user=<a\\x3e session=<fake>");

	/* atoms fall back to <...> when they are not plain tokens */
	log_fields_init(&f);
	log_field_atom(&f, "m", "PL AIN");
	log_field_atom(&f, "e", "");
	log_field_atom(&f, "n", NULL);
	log_field_str(&f, "s", NULL);
	log_field_atom(&f, "ok", "b1.example:143/x@y+z_-");
	log_field_str(&f, "bad key=", "v");
	log_field_str(&f, "", "v");
	assert_string_equal(f.buf, "m=<PL AIN> e=<> n=<> s=<> "
				   "ok=b1.example:143/x@y+z_- bad_key_=<v> "
				   "_=<v>");
	log_event(LOG_LEVEL_INFO, "E", &f);
	assert_int_equal(cap_count, 1);
}

static void test_field_truncation(void **state)
{
	struct log_fields f;
	char big[1000];
	(void)state;

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_fields_init(&f);
	log_field_str(&f, "v", big);
	/* "v=<" + value cut to LOG_FIELD_VALUE_MAX - 1 bytes + ">" */
	assert_int_equal(f.len, 3 + LOG_FIELD_VALUE_MAX - 1 + 1);
	assert_memory_equal(f.buf + f.len - 4, "...>", 4);
	assert_false(f.truncated);

	/* escaped bytes count against the bound too */
	char ctl[600];
	memset(ctl, '\n', sizeof(ctl) - 1);
	ctl[sizeof(ctl) - 1] = '\0';
	log_fields_init(&f);
	log_field_str(&f, "v", ctl);
	assert_true(f.len <= 3 + LOG_FIELD_VALUE_MAX);
	assert_memory_equal(f.buf + f.len - 4, "...>", 4);

	/* the whole list is bounded: later fields are dropped, " ..." marks
	 * it and nothing is appended after the mark */
	log_fields_init(&f);
	for (int i = 0; i < 40; i++)
		log_field_str(&f, "field", big);
	assert_true(f.truncated);
	assert_true(f.len < LOG_FIELDS_SIZE);
	assert_int_equal(strlen(f.buf), f.len);
	assert_memory_equal(f.buf + f.len - 4, " ...", 4);
	size_t len = f.len;
	log_field_uint(&f, "late", 1);
	assert_int_equal(f.len, len);
	log_event(LOG_LEVEL_INFO, "Big", &f);
	assert_true(strlen(cap_lines[0]) < LOG_LINE_MAX);
}

static void test_line_truncation(void **state)
{
	char *big = xmalloc(10000);
	struct log_ctx ctx;
	(void)state;

	memset(big, 'x', 9999);
	big[9999] = '\0';
	log_info("%s", big);
	size_t n = strlen(cap_lines[0]);
	/* the line with its newline fits LOG_LINE_MAX */
	assert_int_equal(n, LOG_LINE_MAX - 1);
	assert_string_equal(cap_lines[0] + n - 6, "xxx...");

	/* the context survives truncation of the message */
	log_ctx_init(&ctx);
	log_ctx_set_user(&ctx, STR("alice"));
	log_ctx_set_session(&ctx, "abc");
	log_ctx_info(&ctx, "%s", big);
	n = strlen(cap_lines[1]);
	assert_true(n <= LOG_LINE_MAX - 1);
	const char *suffix = "x... user=<alice> session=<abc>";
	assert_string_equal(cap_lines[1] + n - strlen(suffix), suffix);

	/* control bytes near the end are not split when cut */
	memset(big, '\n', 9999);
	log_warnx("%s", big);
	n = strlen(cap_lines[2]);
	assert_true(n <= LOG_LINE_MAX - 1);
	assert_string_equal(cap_lines[2] + n - 7, "\\x0a...");
	assert_null(strchr(cap_lines[2], '\n'));

	/* log_warn on an already cut message still ends with the marker */
	errno = EIO;
	memset(big, 'y', 9999);
	log_warn("%s", big);
	n = strlen(cap_lines[3]);
	assert_string_equal(cap_lines[3] + n - 3, "...");
	free(big);
}

static void test_ctx(void **state)
{
	struct log_ctx ctx;
	struct log_fields f;
	(void)state;

	struct sockaddr_in rip = sin4("10.0.0.1");
	log_ctx_init(&ctx);
	log_ctx_info(&ctx, "no context yet");
	log_ctx_set_user(&ctx, STR("alice"));
	log_ctx_set_rip(&ctx, (const struct sockaddr *)&rip);
	log_ctx_set_backend(&ctx, "b1");
	log_ctx_set_session(&ctx, "hzNVPqoXGOB/AAAB");
	log_ctx_info(&ctx, "backend %s is slow", "b1");
	log_fields_init(&f);
	log_field_atom(&f, "method", "PLAIN");
	log_ctx_event(&ctx, LOG_LEVEL_INFO, "Login", &f);
	log_ctx_error(&ctx, "e");
	log_ctx_warnx(&ctx, "w");
	log_ctx_debug(&ctx, "d");
	assert_int_equal(cap_count, 6);
	assert_string_equal(cap_lines[0],
			    "mailring-test: info: no context yet");
	const char *c = " user=<alice> rip=10.0.0.1 backend=b1 "
			"session=<hzNVPqoXGOB/AAAB>";
	char want[512];
	str_printf(want, sizeof(want),
		   "mailring-test: info: backend b1 is "
		   "slow%s",
		   c);
	assert_string_equal(cap_lines[1], want);
	str_printf(want, sizeof(want),
		   "mailring-test: info: Login: "
		   "method=PLAIN%s",
		   c);
	assert_string_equal(cap_lines[2], want);
	str_printf(want, sizeof(want), "mailring-test: error: e%s", c);
	assert_string_equal(cap_lines[3], want);
	str_printf(want, sizeof(want), "mailring-test: warning: w%s", c);
	assert_string_equal(cap_lines[4], want);
	str_printf(want, sizeof(want), "mailring-test: debug: d%s", c);
	assert_string_equal(cap_lines[5], want);

	/* client-controlled user is sanitised; unsetting works */
	log_ctx_set_user(&ctx, str_from("ev\nil>", 6));
	log_ctx_set_rip(&ctx, NULL);
	log_ctx_set_backend(&ctx, "bad name");
	log_ctx_set_session(&ctx, NULL);
	log_ctx_info(&ctx, "x");
	assert_string_equal(cap_lines[6], "mailring-test: info: x "
					  "user=<ev\\x0ail\\x3e> "
					  "backend=<bad name>");
	log_ctx_set_user(&ctx, STR_NULL);
	log_ctx_set_backend(&ctx, NULL);
	struct sockaddr_in6 v6 = sin6("::1");
	log_ctx_set_rip(&ctx, (const struct sockaddr *)&v6);
	log_ctx_info(&ctx, "y");
	assert_string_equal(cap_lines[7], "mailring-test: info: y rip=::1");
	log_ctx_event(NULL, LOG_LEVEL_INFO, "Z", NULL);
	assert_string_equal(cap_lines[8], "mailring-test: info: Z");
}

static void test_ratelimit(void **state)
{
	struct log_ratelimit rl = LOG_RATELIMIT_INIT(1000, 3);
	uint64_t suppressed;
	struct log_fields f;
	(void)state;

	for (int i = 0; i < 10; i++)
		log_emit(LOG_LEVEL_WARNING, NULL, &rl, "bad command %d", i);
	assert_int_equal(cap_count, 3);
	assert_string_equal(cap_lines[2], "mailring-test: warning: bad "
					  "command 2");
	/* still inside the window */
	fake_mono_msecs += 999;
	log_emit(LOG_LEVEL_WARNING, NULL, &rl, "bad command %d", 10);
	assert_int_equal(cap_count, 3);
	/* next window: the first line carries the count */
	fake_mono_msecs += 1;
	log_emit(LOG_LEVEL_WARNING, NULL, &rl, "bad command %d", 11);
	assert_int_equal(cap_count, 4);
	assert_string_equal(cap_lines[3], "mailring-test: warning: bad "
					  "command 11 suppressed=8");
	log_emit(LOG_LEVEL_WARNING, NULL, &rl, "bad command %d", 12);
	assert_string_equal(cap_lines[4], "mailring-test: warning: bad "
					  "command 12");

	/* events, with a context after the count */
	struct log_ctx ctx;
	log_ctx_init(&ctx);
	log_ctx_set_session(&ctx, "s");
	log_fields_init(&f);
	log_field_str(&f, "cmd", "NOOP");
	for (int i = 0; i < 5; i++)
		log_event_emit(LOG_LEVEL_INFO, &ctx, &rl, "Garbage", &f);
	assert_int_equal(cap_count, 6);
	fake_mono_msecs += 5000;
	log_event_emit(LOG_LEVEL_INFO, &ctx, &rl, "Garbage", &f);
	assert_string_equal(cap_lines[6], "mailring-test: info: Garbage: "
					  "cmd=<NOOP> suppressed=4 "
					  "session=<s>");

	/* lines below the level do not use up the burst */
	struct log_ratelimit rl2;
	log_ratelimit_init(&rl2, 1000, 1);
	log_set_level(LOG_LEVEL_INFO);
	log_emit(LOG_LEVEL_DEBUG, NULL, &rl2, "hidden");
	log_emit(LOG_LEVEL_INFO, NULL, &rl2, "shown");
	assert_string_equal(cap_lines[7], "mailring-test: info: shown");

	/* direct use; burst 0 counts as 1; interval 0 never limits */
	struct log_ratelimit rl3;
	log_ratelimit_init(&rl3, 10, 0);
	assert_true(log_ratelimit_check(&rl3, &suppressed));
	assert_int_equal(suppressed, 0);
	assert_false(log_ratelimit_check(&rl3, &suppressed));
	assert_false(log_ratelimit_check(&rl3, &suppressed));
	fake_mono_msecs += 10;
	assert_true(log_ratelimit_check(&rl3, &suppressed));
	assert_int_equal(suppressed, 2);
	/* a clock that goes backwards starts a new window */
	assert_false(log_ratelimit_check(&rl3, &suppressed));
	fake_mono_msecs -= 100;
	assert_true(log_ratelimit_check(&rl3, &suppressed));
	assert_int_equal(suppressed, 1);
	struct log_ratelimit rl4;
	log_ratelimit_init(&rl4, 0, 1);
	for (int i = 0; i < 100; i++)
		assert_true(log_ratelimit_check(&rl4, &suppressed));
	pthread_mutex_destroy(&rl2.lock);
	pthread_mutex_destroy(&rl3.lock);
	pthread_mutex_destroy(&rl4.lock);
}

/* ---- threads ---- */

#define SID_THREADS 8
#define SID_PER_THREAD 5000

static char (*sid_all)[LOG_SESSION_ID_LEN + 1];

static void *sid_worker(void *arg)
{
	size_t base = (size_t)(uintptr_t)arg * SID_PER_THREAD;
	for (size_t i = 0; i < SID_PER_THREAD; i++)
		log_session_id_new(sid_all[base + i]);
	return NULL;
}

static int sid_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void test_session_ids(void **state)
{
	pthread_t th[SID_THREADS];
	const size_t total = SID_THREADS * SID_PER_THREAD;
	(void)state;

	sid_all = xcalloc(total, sizeof(*sid_all));
	for (uintptr_t i = 0; i < SID_THREADS; i++)
		assert_int_equal(
		    pthread_create(&th[i], NULL, sid_worker, (void *)i), 0);
	for (size_t i = 0; i < SID_THREADS; i++)
		pthread_join(th[i], NULL);
	for (size_t i = 0; i < total; i++) {
		assert_int_equal(strlen(sid_all[i]), LOG_SESSION_ID_LEN);
		assert_int_equal(strspn(sid_all[i], "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
						    "abcdefghijklmnopqrstuvwxyz"
						    "0123456789+/"),
				 LOG_SESSION_ID_LEN);
	}
	qsort(sid_all, total, sizeof(*sid_all), sid_cmp);
	for (size_t i = 1; i < total; i++)
		assert_string_not_equal(sid_all[i - 1], sid_all[i]);
	free(sid_all);
	sid_all = NULL;

	/* a forked child gets ids of its own, not a copy of ours */
	char parent_next[LOG_SESSION_ID_LEN + 1],
	    child_id[LOG_SESSION_ID_LEN + 1];
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		log_session_id_new(child_id);
		_exit(write(fds[1], child_id, sizeof(child_id)) ==
			      (ssize_t)sizeof(child_id)
			  ? 0
			  : 1);
	}
	log_session_id_new(parent_next);
	assert_int_equal(read(fds[0], child_id, sizeof(child_id)),
			 sizeof(child_id));
	int status;
	waitpid(pid, &status, 0);
	assert_string_not_equal(parent_next, child_id);
	close(fds[0]);
	close(fds[1]);
}

#define FD_THREADS 4
#define FD_LINES 300
#define FD_PAYLOAD 1500

static void *fd_worker(void *arg)
{
	char payload[FD_PAYLOAD + 1];
	int id = (int)(uintptr_t)arg;

	memset(payload, 'a' + id, FD_PAYLOAD);
	payload[FD_PAYLOAD] = '\0';
	for (int i = 0; i < FD_LINES; i++)
		log_info("thread=%d line=%d %s end", id, i, payload);
	return NULL;
}

static void test_fd_threads(void **state)
{
	char dir[] = "/tmp/test_log.XXXXXX", path[64];
	pthread_t th[FD_THREADS];
	(void)state;

	assert_non_null(mkdtemp(dir));
	str_printf(path, sizeof(path), "%s/out.log", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_TRUNC, 0600);
	assert_true(fd >= 0);
	log_set_callback(NULL, NULL);
	log_set_clocks(NULL, NULL);
	log_set_timestamps(true);
	log_set_fd(fd);
	for (uintptr_t i = 0; i < FD_THREADS; i++)
		assert_int_equal(
		    pthread_create(&th[i], NULL, fd_worker, (void *)i), 0);
	for (size_t i = 0; i < FD_THREADS; i++)
		pthread_join(th[i], NULL);
	log_set_fd(STDERR_FILENO);
	close(fd);

	FILE *fp = fopen(path, "r");
	assert_non_null(fp);
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int lines = 0, per_thread[FD_THREADS] = {0};
	while ((len = getline(&line, &cap, fp)) > 0) {
		int id, no;
		lines++;
		assert_int_equal(line[len - 1], '\n');
		/* 2026-11-24T02:21:04.123Z */
		assert_int_equal(line[4], '-');
		assert_int_equal(line[10], 'T');
		assert_int_equal(line[19], '.');
		assert_int_equal(line[23], 'Z');
		const char *p = strstr(line, " mailring-test: info: thread=");
		assert_int_equal(p - line, 24);
		p += strlen(" mailring-test: info: ");
		/* the payload of one thread, unbroken */
		const char *sp = strchr(strchr(p, ' ') + 1, ' ') + 1;
		id = atoi(p + strlen("thread="));
		no = atoi(strstr(p, "line=") + 5);
		assert_true(id >= 0 && id < FD_THREADS);
		assert_true(no >= 0 && no < FD_LINES);
		assert_int_equal(strspn(sp, (char[]){(char)('a' + id), 0}),
				 FD_PAYLOAD);
		assert_string_equal(sp + FD_PAYLOAD, " end\n");
		per_thread[id]++;
	}
	assert_int_equal(lines, FD_THREADS * FD_LINES);
	for (int i = 0; i < FD_THREADS; i++)
		assert_int_equal(per_thread[i], FD_LINES);
	free(line);
	fclose(fp);
	unlink(path);
	rmdir(dir);
}

/* Runs fn in a child writing its log to a pipe; returns the output. */
static void run_child(void (*fn)(void), char *out, size_t outsize,
		      int *status_r)
{
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	fflush(NULL); /* the child's exit() must not repeat our output */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		log_set_callback(NULL, NULL);
		log_set_fd(fds[1]);
		fn();
		_exit(99);
	}
	close(fds[1]);
	size_t got = 0;
	ssize_t r;
	while ((r = read(fds[0], out + got, outsize - 1 - got)) > 0)
		got += (size_t)r;
	out[got] = '\0';
	close(fds[0]);
	assert_int_equal(waitpid(pid, status_r, 0), pid);
}

static void child_fatal(void)
{
	errno = EACCES;
	fatal("cannot bind %s", "[::]:143");
}

static void child_fatalx(void)
{
	log_set_level(LOG_LEVEL_FATAL); /* fatal lines are never filtered */
	fatalx("bad config");
}

static void test_fatal(void **state)
{
	char out[512];
	int status;
	(void)state;

	run_child(child_fatal, out, sizeof(out), &status);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
	assert_string_equal(out, "mailring-test: fatal: cannot bind [::]:143: "
				 "Permission denied\n");
	run_child(child_fatalx, out, sizeof(out), &status);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
	assert_string_equal(out, "mailring-test: fatal: bad config\n");
}

static void test_syslog_setup(void **state)
{
	int facility;
	(void)state;

	assert_int_equal(log_syslog_facility_parse("mail", &facility), 0);
	assert_int_equal(facility, LOG_MAIL);
	assert_int_equal(log_syslog_facility_parse("LOCAL3", &facility), 0);
	assert_int_equal(facility, LOG_LOCAL3);
	assert_int_equal(log_syslog_facility_parse("mailx", &facility), -1);
	assert_int_equal(log_syslog_facility_parse(NULL, &facility), -1);

	/* a callback still takes precedence over syslog */
	log_set_syslog(true, LOG_MAIL);
	log_info("to the callback");
	log_set_syslog(false, LOG_MAIL);
	assert_int_equal(cap_count, 1);
	assert_string_equal(cap_lines[0],
			    "mailring-test: info: to the callback");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_plain_lines, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_levels, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_warn_errno, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_timestamp_and_ident, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_fields, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_field_sanitize, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_field_truncation, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_line_truncation, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_ctx, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ratelimit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_session_ids, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fd_threads, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fatal, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_syslog_setup, setup, teardown),
	};
	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
