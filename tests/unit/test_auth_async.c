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
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "auth/auth.h"

/* bcrypt cost 10 of "pass" (doveadm pw -s BLF-CRYPT -r 10 -p pass): about
 * 0.1 s of CPU, the slow user */
#define SLOW_HASH                                                              \
	"{BLF-CRYPT}$2y$10$geOcd8EKkDoeVDH1WhLbC.CupgBu1ADI2.MwX/"             \
	"AeWuyyvl3PTJ3l."

static const char users_text[] =
    "plain:{PLAIN}pass\n"
    "slow:" SLOW_HASH "\n"
    "slow2:" SLOW_HASH "\n"
    "sha:{SHA512-CRYPT}$6$LrqbHZ7WzuN30RnB$GPb/rj23VpA.J/fe4auC/KVXvHo7vXF"
    "HNxWtzH2MBw57EZdXQWMAbFe0Ytd2XP2r6GzRTS3YeXuvihmwr4DGw/\n"
    "px:{PLAIN}pass:::::: proxy host=10.0.0.5 port=143 destuser=x "
    "pass=secret director_tag=pool1 user=canonical userdb_quota=1G\n"
    "home:{PLAIN}pass:1000:1000::/home/u\n"
    "moved:{PLAIN}pass:::::: nologin reason=Moved proxy host=10.9.9.9 "
    "nodelay\n"
    "nopw::::::: nopassword host=10.0.0.6\n"
    "nets:{PLAIN}pass:::::: allow_nets=10.0.0.0/8,::1\n"
    "badnets:{PLAIN}pass:::::: allow_nets=10.0.0.0/99\n"
    "badport:{PLAIN}pass:::::: port=99999\n"
    "baduser:{PLAIN}pass:::::: user=a\\b\n"
    "unkscheme:{FOO}pass\n"
    "malformed:{SSHA512}AAAA\n"
    "nopass\n";

static _Atomic uint64_t fake_now;

static uint64_t fake_clock(void *context)
{
	(void)context;
	return atomic_load(&fake_now);
}

/* ---- a result recorder -------------------------------------------------- */

#define MAX_RECS 64

struct rec {
	int tag;
	enum auth_result_code code;
	char user[128];
	bool user_null;
	char reason[256];
	char nologin[64];
	char warning[256];
	uint32_t delay;
	bool cached, proxy, nopassword, nodelay;
	char host[64], destuser[64], pass[64], dtag[64], quota[64], fhome[64];
	uint16_t port;
	pthread_t thread;
};

struct recorder;

struct call {
	struct recorder *rc;
	int tag;
};

struct recorder {
	struct event_base *base;
	int count, want;
	bool timed_out;
	struct rec recs[MAX_RECS];
	struct call calls[MAX_RECS];
};

static void copy(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src == NULL ? "" : src);
}

static void result_cb(const struct auth_result *r, void *context)
{
	struct call *c = context;
	struct recorder *rc = c->rc;

	assert_true(rc->count < MAX_RECS);
	struct rec *rec = &rc->recs[rc->count++];
	rec->tag = c->tag;
	rec->code = r->code;
	rec->user_null = r->user == NULL;
	copy(rec->user, sizeof(rec->user), r->user);
	copy(rec->reason, sizeof(rec->reason), r->log_reason);
	copy(rec->nologin, sizeof(rec->nologin), r->nologin_reason);
	copy(rec->warning, sizeof(rec->warning), r->warning);
	rec->delay = r->delay_ms;
	rec->cached = r->cached;
	rec->proxy = r->proxy;
	rec->nopassword = r->nopassword;
	rec->nodelay = r->nodelay;
	copy(rec->host, sizeof(rec->host), r->host);
	copy(rec->destuser, sizeof(rec->destuser), r->destuser);
	copy(rec->pass, sizeof(rec->pass), r->pass);
	copy(rec->dtag, sizeof(rec->dtag), r->director_tag);
	copy(rec->quota, sizeof(rec->quota),
	     auth_fields_get(r->userdb_fields, "quota"));
	copy(rec->fhome, sizeof(rec->fhome),
	     auth_fields_get(r->userdb_fields, "home"));
	assert_non_null(r->fields);
	assert_non_null(r->userdb_fields);
	rec->port = r->port;
	rec->thread = pthread_self();
	if (rc->count >= rc->want)
		event_base_loopbreak(rc->base);
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct recorder *rc = arg;
	(void)fd;
	(void)what;

	rc->timed_out = true;
	event_base_loopbreak(rc->base);
}

/* Runs the loop until want callbacks in total have arrived (or 30 s). */
static void run_until(struct recorder *rc, int want)
{
	struct timeval tv = {30, 0};
	struct event *t = evtimer_new(rc->base, timeout_cb, rc);

	rc->want = want;
	evtimer_add(t, &tv);
	while (rc->count < want && !rc->timed_out)
		event_base_loop(rc->base, EVLOOP_ONCE);
	event_free(t);
	assert_false(rc->timed_out);
	assert_int_equal(rc->count, want);
}

/* Runs the loop briefly without waiting for anything in particular. */
static void run_briefly(struct recorder *rc, int msecs)
{
	struct timeval tv = {0, msecs * 1000};

	event_base_loopexit(rc->base, &tv);
	event_base_dispatch(rc->base);
}

static const struct rec *find_rec(const struct recorder *rc, int tag)
{
	for (int i = 0; i < rc->count; i++) {
		if (rc->recs[i].tag == tag)
			return &rc->recs[i];
	}
	print_error("no result for tag %d\n", tag);
	fail();
	abort();
}

static int rec_index(const struct recorder *rc, int tag)
{
	for (int i = 0; i < rc->count; i++) {
		if (rc->recs[i].tag == tag)
			return i;
	}
	return -1;
}

static struct auth_request *submit_full(struct auth *auth, struct recorder *rc,
					int tag, struct str user,
					struct str password, const char *ip,
					unsigned int flags, struct str authzid)
{
	struct auth_request_params p = {
	    .user = user,
	    .authzid = authzid,
	    .password = password,
	    .service = "imap",
	    .client_ip = ip,
	    .session_id = "sess1",
	    .flags = flags,
	};

	assert_true(tag >= 0 && tag < MAX_RECS);
	rc->calls[tag].rc = rc;
	rc->calls[tag].tag = tag;
	return auth_request_new(auth, rc->base, &p, result_cb, &rc->calls[tag]);
}

static struct auth_request *submit(struct auth *auth, struct recorder *rc,
				   int tag, const char *user,
				   const char *password, const char *ip)
{
	return submit_full(auth, rc, tag, str_cstr(user), str_cstr(password),
			   ip, 0, STR_NULL);
}

/* ---- fixture ----------------------------------------------------------- */

struct fixture {
	char dir[64];
	char path[128];
	struct recorder rc;
};

static void write_users(struct fixture *fx, const char *text)
{
	char tmp[160];

	snprintf(tmp, sizeof(tmp), "%s.tmp", fx->path);
	FILE *f = fopen(tmp, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, fx->path), 0);
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	snprintf(fx->dir, sizeof(fx->dir), "/tmp/mr_test_auth_XXXXXX");
	if (mkdtemp(fx->dir) == NULL)
		return -1;
	snprintf(fx->path, sizeof(fx->path), "%s/users", fx->dir);
	write_users(fx, users_text);
	fx->rc.base = event_base_new();
	if (fx->rc.base == NULL)
		return -1;
	atomic_store(&fake_now, 1000000);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	/* dispose of whatever is still posted to the loop */
	event_base_loop(fx->rc.base, EVLOOP_NONBLOCK);
	event_base_free(fx->rc.base);
	unlink(fx->path);
	rmdir(fx->dir);
	free(fx);
	return 0;
}

struct opts {
	unsigned int workers;
	unsigned int queue_max;
	bool cache;
	bool penalty;
	bool fake_clock;
	uint32_t failure_delay_ms;
};

static struct auth *make_auth(struct fixture *fx, const struct opts *o)
{
	struct auth_settings set;
	char args[256];
	char *error = NULL;

	auth_settings_init(&set);
	snprintf(args, sizeof(args), "scheme=SHA512-CRYPT refresh_ms=0 %s",
		 fx->path);
	set.passdb_args = args;
	set.workers = o->workers;
	set.queue_max = o->queue_max;
	set.cache_enabled = o->cache;
	set.penalty_enabled = o->penalty;
	set.failure_delay_ms = o->failure_delay_ms;
	if (o->fake_clock)
		set.now_ms = fake_clock;
	struct auth *auth = auth_new(&set, &error);
	if (auth == NULL)
		print_error("auth_new: %s\n", error);
	assert_non_null(auth);
	return auth;
}

/* ---- tests -------------------------------------------------------------- */

static void test_results(void **state)
{
	struct fixture *fx = *state;
	struct opts o = {2, 64, false, false, true, 2000};
	struct auth *auth = make_auth(fx, &o);
	struct recorder *rc = &fx->rc;
	const struct rec *r;
	int n = 0;

	submit(auth, rc, n++, "plain", "pass", "192.0.2.1");      /* 0 */
	submit(auth, rc, n++, "plain", "wrong", "192.0.2.1");     /* 1 */
	submit(auth, rc, n++, "nosuchuser", "pass", "192.0.2.1"); /* 2 */
	submit(auth, rc, n++, "PLAIN", "pass", "192.0.2.1");      /* 3 */
	submit(auth, rc, n++, "sha", "pass", "192.0.2.1");        /* 4 */
	submit(auth, rc, n++, "px", "pass", "192.0.2.1");         /* 5 */
	submit(auth, rc, n++, "moved", "pass", "192.0.2.1");      /* 6 */
	submit(auth, rc, n++, "moved", "wrong", "192.0.2.1");     /* 7 */
	submit(auth, rc, n++, "nopw", "anything", "192.0.2.1");   /* 8 */
	submit(auth, rc, n++, "nets", "pass", "10.1.2.3");        /* 9 */
	submit(auth, rc, n++, "nets", "pass", "192.0.2.1");       /* 10 */
	submit(auth, rc, n++, "nets", "pass", "::1");             /* 11 */
	submit(auth, rc, n++, "badnets", "pass", "10.1.2.3");     /* 12 */
	submit(auth, rc, n++, "badport", "pass", NULL);           /* 13 */
	submit(auth, rc, n++, "baduser", "pass", NULL);           /* 14 */
	submit(auth, rc, n++, "unkscheme", "pass", NULL);         /* 15 */
	submit(auth, rc, n++, "malformed", "pass", NULL);         /* 16 */
	submit(auth, rc, n++, "nopass", "pass", NULL);            /* 17 */
	submit(auth, rc, n++, "plain", "", NULL);                 /* 18 */
	submit_full(auth, rc, n++, STR("plain"), str_from("pa\0ss", 5), NULL, 0,
		    STR_NULL); /* 19 */
	submit_full(auth, rc, n++, STR("plain"), STR("pass"), NULL, 0,
		    STR("admin")); /* 20 */
	submit_full(auth, rc, n++, STR("plain"), STR("pass"), NULL, 0,
		    STR("plain")); /* 21 */
	submit_full(auth, rc, n++, STR("home"), STR_NULL, NULL,
		    AUTH_REQUEST_FLAG_LOOKUP_ONLY, STR_NULL); /* 22 */
	submit_full(auth, rc, n++, STR("ghost"), STR_NULL, NULL,
		    AUTH_REQUEST_FLAG_LOOKUP_ONLY, STR_NULL); /* 23 */
	submit(auth, rc, n++, "a b", "pass", "192.0.2.1");    /* 24 */
	/* nothing is answered from inside auth_request_new */
	assert_int_equal(rc->count, 0);
	run_until(rc, n);

	r = find_rec(rc, 0);
	assert_int_equal(r->code, AUTH_RESULT_OK);
	assert_string_equal(r->user, "plain");
	assert_int_equal(r->delay, 0);
	assert_string_equal(r->reason, "");
	assert_false(r->cached);
	assert_false(r->proxy);
	r = find_rec(rc, 1);
	assert_int_equal(r->code, AUTH_RESULT_FAILED);
	assert_string_equal(r->user, "plain");
	assert_string_equal(r->reason, "password mismatch");
	assert_int_equal(r->delay, 2000); /* the fake clock stands still */
	r = find_rec(rc, 2);
	assert_int_equal(r->code, AUTH_RESULT_UNKNOWN_USER);
	assert_string_equal(r->user, "nosuchuser");
	assert_int_equal(r->delay, 2000);
	r = find_rec(rc, 3); /* %Lu */
	assert_int_equal(r->code, AUTH_RESULT_OK);
	assert_string_equal(r->user, "plain");
	r = find_rec(rc, 4);
	assert_int_equal(r->code, AUTH_RESULT_OK);

	r = find_rec(rc, 5);
	assert_int_equal(r->code, AUTH_RESULT_OK);
	assert_string_equal(r->user, "canonical");
	assert_true(r->proxy);
	assert_string_equal(r->host, "10.0.0.5");
	assert_int_equal(r->port, 143);
	assert_string_equal(r->destuser, "x");
	assert_string_equal(r->pass, "secret");
	assert_string_equal(r->dtag, "pool1");
	assert_string_equal(r->quota, "1G");

	r = find_rec(rc, 6);
	assert_int_equal(r->code, AUTH_RESULT_NOLOGIN);
	assert_string_equal(r->nologin, "Moved");
	assert_true(r->proxy);
	assert_string_equal(r->host, "10.9.9.9");
	assert_true(r->nodelay);
	assert_int_equal(r->delay, 0);
	r = find_rec(rc, 7); /* nologin is not revealed without the password */
	assert_int_equal(r->code, AUTH_RESULT_FAILED);
	assert_string_equal(r->nologin, "");
	assert_string_equal(r->host, "");
	assert_int_equal(r->delay, 2000);

	r = find_rec(rc, 8);
	assert_int_equal(r->code, AUTH_RESULT_OK);
	assert_true(r->nopassword);
	assert_string_equal(r->host, "10.0.0.6");
	assert_int_equal(find_rec(rc, 9)->code, AUTH_RESULT_OK);
	r = find_rec(rc, 10);
	assert_int_equal(r->code, AUTH_RESULT_FAILED);
	assert_non_null(strstr(r->reason, "allow_nets"));
	assert_int_equal(find_rec(rc, 11)->code, AUTH_RESULT_OK);
	assert_int_equal(find_rec(rc, 12)->code, AUTH_RESULT_TEMPFAIL);
	r = find_rec(rc, 13);
	assert_int_equal(r->code, AUTH_RESULT_TEMPFAIL);
	assert_non_null(strstr(r->reason, "port"));
	assert_string_equal(r->host, "");
	assert_int_equal(find_rec(rc, 14)->code, AUTH_RESULT_TEMPFAIL);
	r = find_rec(rc, 15);
	assert_int_equal(r->code, AUTH_RESULT_TEMPFAIL);
	assert_non_null(strstr(r->reason, "unknown scheme"));
	r = find_rec(rc, 16);
	assert_int_equal(r->code, AUTH_RESULT_TEMPFAIL);
	assert_non_null(strstr(r->reason, "malformed"));
	r = find_rec(rc, 17);
	assert_int_equal(r->code, AUTH_RESULT_FAILED);
	assert_non_null(strstr(r->reason, "no password"));
	r = find_rec(rc, 18);
	assert_int_equal(r->code, AUTH_RESULT_FAILED);
	assert_string_equal(r->reason, "empty password");
	r = find_rec(rc, 19);
	assert_int_equal(r->code, AUTH_RESULT_FAILED);
	assert_string_equal(r->reason, "password contains NUL");
	assert_int_equal(find_rec(rc, 20)->code, AUTH_RESULT_FAILED);
	assert_int_equal(find_rec(rc, 21)->code, AUTH_RESULT_OK);
	r = find_rec(rc, 22);
	assert_int_equal(r->code, AUTH_RESULT_OK);
	assert_string_equal(r->fhome, "/home/u");
	assert_int_equal(r->delay, 0);
	r = find_rec(rc, 23);
	assert_int_equal(r->code, AUTH_RESULT_UNKNOWN_USER);
	assert_int_equal(r->delay, 0);
	r = find_rec(rc, 24);
	assert_int_equal(r->code, AUTH_RESULT_FAILED);
	assert_true(r->user_null);
	assert_non_null(strstr(r->reason, "invalid user name: "));
	/* the client's bytes are not repeated in the reason */
	assert_null(strstr(r->reason, "a b"));
	assert_int_equal(r->delay, 2000);

	/* no log text ever contains the password */
	for (int i = 0; i < rc->count; i++) {
		assert_null(strstr(rc->recs[i].reason, "pass "));
		assert_null(strstr(rc->recs[i].reason, "wrong"));
		assert_null(strstr(rc->recs[i].reason, "anything"));
	}
	struct auth_stats st;
	auth_get_stats(auth, &st);
	assert_int_equal(st.requests, (uint64_t)n);
	assert_int_equal(st.queued, 0);
	auth_free(&auth);
	assert_null(auth);
}

static void test_injection(void **state)
{
	struct fixture *fx = *state;
	struct opts o = {1, 64, true, false, true, 100};
	struct auth *auth = make_auth(fx, &o);
	struct recorder *rc = &fx->rc;
	const struct str bad[] = {
	    {"plain\r\nb", 8}, {"pla\"in", 7}, {"pla in", 6},
	    {"plain\0", 6},    {"\0plain", 6}, {"pl\xc3\xa4in", 7},
	    {"pl\\ain", 6},    {"plain\n", 6}, {"", 0},
	};
	char big[300];
	int n = 0;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		submit_full(auth, rc, n++, bad[i], STR("pass"), NULL, 0,
			    STR_NULL);
	memset(big, 'a', sizeof(big));
	submit_full(auth, rc, n++, str_from(big, sizeof(big)), STR("pass"),
		    NULL, 0, STR_NULL);
	submit_full(auth, rc, n++, STR("pla\"in"), STR_NULL, NULL,
		    AUTH_REQUEST_FLAG_LOOKUP_ONLY, STR_NULL);
	run_until(rc, n);
	for (int i = 0; i < n; i++) {
		assert_int_equal(rc->recs[i].code, AUTH_RESULT_FAILED);
		assert_true(rc->recs[i].user_null);
		assert_non_null(
		    strstr(rc->recs[i].reason, "invalid user name"));
		/* sanitised in the log text */
		assert_null(strchr(rc->recs[i].reason, '\r'));
		assert_null(strchr(rc->recs[i].reason, '\n'));
	}
	struct auth_stats st;
	auth_get_stats(auth, &st);
	assert_int_equal(st.worker_done, 0); /* none reached a worker */
	auth_free(&auth);
}

struct loop_thread {
	struct auth *auth;
	struct recorder rc;
	pthread_t tid;
	int n;
};

static void *loop_main(void *arg)
{
	struct loop_thread *lt = arg;

	lt->rc.base = event_base_new();
	for (int i = 0; i < lt->n; i++)
		submit(lt->auth, &lt->rc, i, i % 2 == 0 ? "sha" : "plain",
		       i % 3 == 0 ? "wrong" : "pass", "192.0.2.1");
	run_until(&lt->rc, lt->n);
	event_base_free(lt->rc.base);
	return NULL;
}

static void test_callback_thread(void **state)
{
	struct fixture *fx = *state;
	struct opts o = {2, 64, false, false, false, 0};
	struct auth *auth = make_auth(fx, &o);
	struct loop_thread lt[2];

	memset(lt, 0, sizeof(lt));
	for (int i = 0; i < 2; i++) {
		lt[i].auth = auth;
		lt[i].n = 12;
		assert_int_equal(
		    pthread_create(&lt[i].tid, NULL, loop_main, &lt[i]), 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(lt[i].tid, NULL);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(lt[i].rc.count, 12);
		for (int j = 0; j < 12; j++) {
			const struct rec *r = &lt[i].rc.recs[j];
			/* on the requesting loop's thread, nowhere else */
			assert_true(pthread_equal(r->thread, lt[i].tid));
			assert_false(pthread_equal(r->thread, pthread_self()));
			assert_int_equal(r->code, r->tag % 3 == 0
						      ? AUTH_RESULT_FAILED
						      : AUTH_RESULT_OK);
		}
	}
	auth_free(&auth);
}

static uint64_t real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void test_slow_hash_does_not_block(void **state)
{
	struct fixture *fx = *state;
	struct opts o = {2, 64, false, false, false, 0};
	struct auth *auth = make_auth(fx, &o);
	struct recorder *rc = &fx->rc;

	/* the bcrypt user first, then a PLAIN one */
	uint64_t t0 = real_ms();
	submit(auth, rc, 0, "slow", "pass", NULL);
	submit(auth, rc, 1, "plain", "pass", NULL);
	submit(auth, rc, 2, "plain", "wrong", NULL);
	run_until(rc, 3);
	uint64_t t1 = real_ms();
	/* the PLAIN results overtake the slow one */
	assert_int_equal(rc->recs[2].tag, 0);
	assert_true(rec_index(rc, 1) < rec_index(rc, 0));
	assert_true(rec_index(rc, 2) < rec_index(rc, 0));
	assert_int_equal(find_rec(rc, 0)->code, AUTH_RESULT_OK);
	assert_int_equal(find_rec(rc, 1)->code, AUTH_RESULT_OK);
	assert_int_equal(find_rec(rc, 2)->code, AUTH_RESULT_FAILED);
	print_message("bcrypt-10 verify plus two PLAIN: %llu ms\n",
		      (unsigned long long)(t1 - t0));
	/* the real clock: a failure's delay is what is left of 0 ms */
	assert_int_equal(find_rec(rc, 2)->delay, 0);
	auth_free(&auth);
}

static void test_delay_counts_from_request(void **state)
{
	struct fixture *fx = *state;
	struct opts o = {1, 64, false, false, false, 2000};
	struct auth *auth = make_auth(fx, &o);
	struct recorder *rc = &fx->rc;

	/* a wrong password for the slow user costs ~100 ms of the 2 s */
	submit(auth, rc, 0, "slow", "wrong", NULL);
	submit(auth, rc, 1, "nosuchuser", "wrong", NULL);
	run_until(rc, 2);
	const struct rec *slow = find_rec(rc, 0), *unk = find_rec(rc, 1);
	assert_int_equal(slow->code, AUTH_RESULT_FAILED);
	assert_int_equal(unk->code, AUTH_RESULT_UNKNOWN_USER);
	assert_true(slow->delay <= 1990);
	assert_true(slow->delay >= 1000);
	print_message("failure delay left after bcrypt-10: %u ms\n",
		      slow->delay);
	auth_free(&auth);
}

static void test_queue_full(void **state)
{
	struct fixture *fx = *state;
	struct opts o = {1, 1, false, false, false, 0};
	struct auth *auth = make_auth(fx, &o);
	struct recorder *rc = &fx->rc;
	int tempfails = 0;

	submit(auth, rc, 0, "slow", "pass", NULL);
	submit(auth, rc, 1, "slow2", "pass", NULL);
	submit(auth, rc, 2, "plain", "pass", NULL);
	submit(auth, rc, 3, "plain", "pass", NULL);
	submit(auth, rc, 4, "plain", "pass", NULL);
	run_until(rc, 5);
	for (int i = 0; i < 5; i++) {
		if (rc->recs[i].code == AUTH_RESULT_TEMPFAIL) {
			tempfails++;
			assert_string_equal(rc->recs[i].reason,
					    "auth queue is full");
			/* answered at once, not after the slow hash */
			assert_true(i < rec_index(rc, 0));
		}
	}
	/* one worker busy, one slot queued: at least 3 of 5 refused */
	assert_true(tempfails >= 3);
	/* the first request always got the empty queue */
	assert_int_equal(find_rec(rc, 0)->code, AUTH_RESULT_OK);
	struct auth_stats st;
	auth_get_stats(auth, &st);
	assert_int_equal(st.queue_full, (uint64_t)tempfails);
	auth_free(&auth);
}

static void test_cancel(void **state)
{
	struct fixture *fx = *state;
	struct opts o = {1, 16, true, false, false, 0};
	struct auth *auth = make_auth(fx, &o);
	struct recorder *rc = &fx->rc;
	struct auth_stats st;

	/* A runs (slow), B waits in the queue */
	struct auth_request *a = submit(auth, rc, 0, "slow", "pass", NULL);
	struct auth_request *b = submit(auth, rc, 1, "plain", "pass", NULL);
	/* wait until the worker took A */
	for (int i = 0; i < 1000; i++) {
		auth_get_stats(auth, &st);
		if (st.running == 1)
			break;
		usleep(1000);
	}
	assert_int_equal(st.running, 1);
	assert_int_equal(st.queued, 1);
	/* cancelling a queued request drops it at once */
	auth_request_cancel(&b);
	assert_null(b);
	auth_get_stats(auth, &st);
	assert_int_equal(st.queued, 0);
	/* cancelling a running one: its worker finishes, the loop drops it */
	auth_request_cancel(&a);
	auth_request_cancel(&a); /* NULL: no-op */
	/* C goes after A on the single worker, so A's completion reaches the
	 * loop first */
	submit(auth, rc, 2, "plain", "pass", NULL);
	run_until(rc, 1);
	assert_int_equal(rc->recs[0].tag, 2);
	run_briefly(rc, 50);
	assert_int_equal(rc->count, 1);

	/* a request answered without a worker (invalid name, cache hit) can
	 * be cancelled too */
	struct auth_request *d = submit(auth, rc, 3, "bad user", "x", NULL);
	struct auth_request *e = submit(auth, rc, 4, "plain", "pass", NULL);
	auth_request_cancel(&d);
	auth_request_cancel(&e);
	submit(auth, rc, 5, "plain", "pass", NULL);
	run_until(rc, 2);
	assert_int_equal(rc->recs[1].tag, 5);
	assert_true(rc->recs[1].cached);
	run_briefly(rc, 20);
	assert_int_equal(rc->count, 2);
	auth_get_stats(auth, &st);
	assert_int_equal(st.cancelled, 4);
	auth_free(&auth);
}

static void test_cache(void **state)
{
	struct fixture *fx = *state;
	struct opts o = {2, 16, true, false, false, 0};
	struct auth *auth = make_auth(fx, &o);
	struct recorder *rc = &fx->rc;

	submit(auth, rc, 0, "slow", "pass", NULL);
	run_until(rc, 1);
	assert_false(rc->recs[0].cached);
	/* the second login is answered from the cache, without bcrypt (and
	 * without a worker) */
	struct auth_stats st;
	submit(auth, rc, 1, "slow", "pass", NULL);
	run_until(rc, 2);
	assert_true(rc->recs[1].cached);
	assert_int_equal(rc->recs[1].code, AUTH_RESULT_OK);
	auth_get_stats(auth, &st);
	assert_int_equal(st.worker_done, 1);
	/* a wrong password is never answered from the cache */
	submit(auth, rc, 2, "slow", "wrong", NULL);
	run_until(rc, 3);
	assert_false(rc->recs[2].cached);
	assert_int_equal(rc->recs[2].code, AUTH_RESULT_FAILED);
	/* cached policy fields are applied again (nologin, proxy) */
	submit(auth, rc, 3, "moved", "pass", NULL);
	run_until(rc, 4);
	submit(auth, rc, 4, "moved", "pass", NULL);
	run_until(rc, 5);
	assert_true(rc->recs[4].cached);
	assert_int_equal(rc->recs[4].code, AUTH_RESULT_NOLOGIN);
	assert_string_equal(rc->recs[4].nologin, "Moved");
	/* unknown users are cached negatively */
	submit(auth, rc, 5, "ghost", "x", NULL);
	run_until(rc, 6);
	submit(auth, rc, 6, "ghost", "y", NULL);
	run_until(rc, 7);
	assert_int_equal(rc->recs[6].code, AUTH_RESULT_UNKNOWN_USER);
	assert_true(rc->recs[6].cached);
	/* a lookup without a password uses the cached entry */
	submit_full(auth, rc, 7, STR("slow"), STR_NULL, NULL,
		    AUTH_REQUEST_FLAG_LOOKUP_ONLY, STR_NULL);
	run_until(rc, 8);
	assert_true(rc->recs[7].cached);
	assert_int_equal(rc->recs[7].code, AUTH_RESULT_OK);

	/* a changed file flushes the cache at the next passdb lookup */
	write_users(fx, "slow:{PLAIN}newpass\nplain:{PLAIN}pass\n"
			"ghost:{PLAIN}boo\n");
	submit(auth, rc, 8, "plain", "pass", NULL);
	run_until(rc, 9);
	assert_false(rc->recs[8].cached);
	submit(auth, rc, 9, "slow", "pass", NULL);
	run_until(rc, 10);
	assert_false(rc->recs[9].cached);
	assert_int_equal(rc->recs[9].code, AUTH_RESULT_FAILED);
	submit(auth, rc, 10, "slow", "newpass", NULL);
	submit(auth, rc, 11, "ghost", "boo", NULL);
	run_until(rc, 12);
	assert_int_equal(find_rec(rc, 10)->code, AUTH_RESULT_OK);
	assert_int_equal(find_rec(rc, 11)->code, AUTH_RESULT_OK);
	auth_get_stats(auth, &st);
	assert_int_equal(st.cache_hits, 4);
	auth_free(&auth);
}

static void test_penalty(void **state)
{
	struct fixture *fx = *state;
	struct opts o = {1, 16, true, true, true, 2000};
	struct auth *auth = make_auth(fx, &o);
	struct recorder *rc = &fx->rc;
	const uint32_t want[] = {2000, 2000, 4000, 8000, 15000, 15000};
	char pw[16];
	int n = 0;

	/* distinct wrong passwords from one IP: the delay doubles */
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		snprintf(pw, sizeof(pw), "guess%zu", i);
		submit(auth, rc, n, "plain", pw, "198.51.100.1");
		run_until(rc, ++n);
		assert_int_equal(rc->recs[n - 1].code, AUTH_RESULT_FAILED);
		assert_int_equal(rc->recs[n - 1].delay, want[i]);
	}
	/* the same wrong password again does not escalate further than it
	 * was */
	submit(auth, rc, n, "plain", "guess5", "198.51.100.1");
	run_until(rc, ++n);
	assert_int_equal(rc->recs[n - 1].delay, 15000);
	/* even the right password waits out the IP's penalty... */
	submit(auth, rc, n, "plain", "pass", "198.51.100.1");
	run_until(rc, ++n);
	assert_int_equal(rc->recs[n - 1].code, AUTH_RESULT_OK);
	assert_int_equal(rc->recs[n - 1].delay, 15000);
	/* ...but it clears the user's, so another IP is not delayed */
	submit(auth, rc, n, "plain", "pass", "203.0.113.5");
	run_until(rc, ++n);
	assert_int_equal(rc->recs[n - 1].code, AUTH_RESULT_OK);
	assert_int_equal(rc->recs[n - 1].delay, 0);
	/* unknown users and invalid names count against the IP too */
	submit(auth, rc, n, "bad name", "x", "203.0.113.9");
	run_until(rc, ++n);
	submit(auth, rc, n, "nobody", "x", "203.0.113.9");
	run_until(rc, ++n);
	submit(auth, rc, n, "plain", "pass", "203.0.113.9");
	run_until(rc, ++n);
	assert_int_equal(rc->recs[n - 1].delay, 4000);
	/* decay: an hour later the IP is clean */
	atomic_fetch_add(&fake_now, 3600 * 1000);
	submit(auth, rc, n, "plain", "pass", "198.51.100.1");
	run_until(rc, ++n);
	assert_int_equal(rc->recs[n - 1].delay, 0);
	/* lookups are never delayed */
	submit_full(auth, rc, n, STR("nobody"), STR_NULL, "203.0.113.9",
		    AUTH_REQUEST_FLAG_LOOKUP_ONLY, STR_NULL);
	run_until(rc, ++n);
	assert_int_equal(rc->recs[n - 1].delay, 0);
	auth_free(&auth);
}

static void test_free_with_pending(void **state)
{
	struct fixture *fx = *state;
	struct opts o = {1, 16, false, false, false, 0};
	struct auth *auth = make_auth(fx, &o);
	struct recorder *rc = &fx->rc;
	struct auth_stats st;

	submit(auth, rc, 0, "slow", "pass", NULL);
	for (int i = 0; i < 1000; i++) {
		auth_get_stats(auth, &st);
		if (st.running == 1)
			break;
		usleep(1000);
	}
	submit(auth, rc, 1, "plain", "pass", NULL);
	struct auth_request *c = submit(auth, rc, 2, "plain", "pass", NULL);
	submit(auth, rc, 3, "plain", "pass", NULL);
	/* waits for the slow hash, answers the queued ones with TEMPFAIL */
	auth_free(&auth);
	assert_null(auth);
	/* cancelling stays valid after auth_free */
	auth_request_cancel(&c);
	run_until(rc, 3);
	run_briefly(rc, 20);
	assert_int_equal(rc->count, 3);
	assert_int_equal(find_rec(rc, 0)->code, AUTH_RESULT_OK);
	assert_int_equal(find_rec(rc, 1)->code, AUTH_RESULT_TEMPFAIL);
	assert_string_equal(find_rec(rc, 1)->reason,
			    "auth service is shutting down");
	assert_int_equal(find_rec(rc, 3)->code, AUTH_RESULT_TEMPFAIL);
}

static void test_warning_on_broken_reload(void **state)
{
	struct fixture *fx = *state;
	struct opts o = {1, 16, false, false, false, 0};
	struct auth *auth = make_auth(fx, &o);
	struct recorder *rc = &fx->rc;

	write_users(fx, "plain:{PLAIN}pass\nbroken line\n");
	submit(auth, rc, 0, "plain", "pass", NULL);
	run_until(rc, 1);
	/* still served from the previous table, and the admin is told */
	assert_int_equal(rc->recs[0].code, AUTH_RESULT_OK);
	assert_non_null(strstr(rc->recs[0].warning, "reload failed"));
	assert_non_null(strstr(rc->recs[0].warning, "users:2:"));
	submit(auth, rc, 1, "slow", "pass", NULL);
	run_until(rc, 2);
	assert_int_equal(rc->recs[1].code, AUTH_RESULT_OK);
	assert_string_equal(rc->recs[1].warning, "");
	auth_free(&auth);
}

static void test_settings_errors(void **state)
{
	struct fixture *fx = *state;
	struct auth_settings set;
	char *error = NULL;
	char args[256];

	auth_settings_init(&set);
	assert_true(set.workers >= 2);
	assert_int_equal(set.failure_delay_ms, 2000);
	assert_string_equal(set.passdb_driver, "passwd-file");
	snprintf(args, sizeof(args), "%s", fx->path);
	set.passdb_args = args;

	set.passdb_driver = "ldap";
	assert_null(auth_new(&set, &error));
	assert_string_equal(error, "auth: unknown passdb driver");
	free(error);
	set.passdb_driver = "passwd-file";
	set.passdb_args = "/nonexistent/users";
	assert_null(auth_new(&set, &error));
	assert_non_null(strstr(error, "open() failed"));
	free(error);
	set.passdb_args = args;
	set.workers = 0;
	assert_null(auth_new(&set, &error));
	free(error);
	set.workers = 2;
	set.queue_max = 0;
	assert_null(auth_new(&set, &error));
	free(error);
	set.queue_max = 4;
	set.username_format = "%d";
	assert_null(auth_new(&set, &error));
	free(error);
	set.username_format = NULL;
	set.penalty.max_entries = 0;
	assert_null(auth_new(&set, &error));
	free(error);
	set.penalty_enabled = false;
	struct auth *auth = auth_new(&set, &error);
	assert_non_null(auth);
	auth_free(&auth);
	auth_free(&auth);
	assert_string_equal(auth_result_code_str(AUTH_RESULT_NOLOGIN),
			    "nologin");
	assert_string_equal(auth_result_code_str(AUTH_RESULT_TEMPFAIL),
			    "tempfail");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_results, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_injection, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_callback_thread, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_slow_hash_does_not_block,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_delay_counts_from_request,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_queue_full, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_penalty, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_free_with_pending, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_warning_on_broken_reload,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_settings_errors, setup,
					    teardown),
	};

	/* libevent locking must be on before any event_base exists */
	if (evthread_use_pthreads() != 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
