#include "redis_client.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "log.h"
#include "net.h"
#include "str.h"
#include "xmalloc.h"

#define REDIS_ADDR_MAX 300

enum rc_state {
	RC_IDLE = 0,     /* waiting for the next attempt */
	RC_DISCOVERING,  /* asking a sentinel for the master */
	RC_CONNECTING,   /* both connections opening, ROLE and SUBSCRIBE sent */
	RC_READY,
};

struct redis_client {
	struct event_base *base;
	struct redis_client_settings set;   /* strings owned (copied) */
	struct redis_client_callbacks cbs;
	void *ctx;

	enum rc_state state;
	redisAsyncContext *cmd;
	redisAsyncContext *sub;
	redisAsyncContext *sentinel;
	bool role_ok;
	bool subscribed;
	bool outage_reported;    /* disconnected() was called for this outage */
	bool ever_ready;
	size_t sentinel_idx;
	size_t sentinel_tries;     /* sentinels asked in this attempt */
	char master[REDIS_ADDR_MAX];
	char last_error[256];

	struct net_timer *retry_timer;
	struct net_timer *connect_timer;
};

struct rc_command {
	struct redis_client *rc;
	redis_reply_fn *cb;
	void *ctx;
	struct net_timer *timer;
	bool answered;
};

static void rc_fail(struct redis_client *rc, const char *why);
static void rc_next_sentinel(struct redis_client *rc, const char *why);

/* The settings' strings are const for callers and owned here. */
static void free_owned(const char *s)
{
	free((void *)(uintptr_t)s);
}

static char *dup_or_null(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

const char *redis_reply_error(const struct redisReply *reply)
{
	if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
		return reply->str;
	return NULL;
}

/* "host:port" or "[v6]:port" into host and port. */
static bool split_addr(const char *addr, char *host, size_t hostsize, int *port_r)
{
	const char *colon = strrchr(addr, ':');
	const char *h = addr;
	size_t hlen;
	uint64_t port = 0;

	if (colon == NULL || colon[1] == '\0')
		return false;
	hlen = (size_t)(colon - addr);
	if (hlen >= 2 && addr[0] == '[' && addr[hlen - 1] == ']') {
		h = addr + 1;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= hostsize)
		return false;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	for (const char *p = colon + 1; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return false;
		port = port * 10 + (uint64_t)(*p - '0');
		if (port > 65535)
			return false;
	}
	if (port == 0)
		return false;
	*port_r = (int)port;
	return true;
}

/* ---- connections -------------------------------------------------------- */

static void rc_free_context(redisAsyncContext **acp)
{
	redisAsyncContext *ac = *acp;
	if (ac == NULL)
		return;
	*acp = NULL;
	ac->data = NULL; /* the callbacks below ignore it from now on */
	redisAsyncFree(ac);
}

static void rc_teardown(struct redis_client *rc)
{
	rc_free_context(&rc->sentinel);
	rc_free_context(&rc->cmd);
	rc_free_context(&rc->sub);
	net_timer_stop(rc->connect_timer);
	rc->role_ok = false;
	rc->subscribed = false;
}

static void rc_retry(void *context)
{
	struct redis_client *rc = context;
	redis_client_start(rc);
}

static void rc_fail(struct redis_client *rc, const char *why)
{
	bool was_ready = rc->state == RC_READY;

	rc_teardown(rc);
	rc->state = RC_IDLE;
	rc->master[0] = '\0';
	str_copy(str_cstr(why), rc->last_error, sizeof(rc->last_error));
	net_timer_start(rc->retry_timer, (unsigned int)rc->set.reconnect_msecs,
			false);
	/* one report per outage: the first failed attempt, or losing a
	 * working connection */
	if ((was_ready || !rc->outage_reported) && rc->cbs.disconnected != NULL) {
		rc->outage_reported = true;
		rc->cbs.disconnected(rc->ctx, why);
	}
}

static void rc_check_ready(struct redis_client *rc)
{
	if (rc->state != RC_CONNECTING || !rc->role_ok || !rc->subscribed)
		return;
	rc->state = RC_READY;
	rc->outage_reported = false;
	rc->ever_ready = true;
	net_timer_stop(rc->connect_timer);
	if (rc->cbs.connected != NULL)
		rc->cbs.connected(rc->ctx, rc->master);
}

static void rc_connect_timeout(void *context)
{
	struct redis_client *rc = context;
	char why[REDIS_ADDR_MAX + 64];
	if (rc->state == RC_DISCOVERING) {
		rc_next_sentinel(rc, "no answer in time");
		return;
	}
	str_printf(why, sizeof(why), "redis %s: connect timed out", rc->master);
	rc_fail(rc, why);
}

/* ac is going (hiredis frees it after the callback): drop our pointer. */
static void rc_forget_context(struct redis_client *rc, const redisAsyncContext *ac)
{
	if (ac == rc->cmd)
		rc->cmd = NULL;
	else if (ac == rc->sub)
		rc->sub = NULL;
	else if (ac == rc->sentinel)
		rc->sentinel = NULL;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	struct redis_client *rc = ac->data;
	char why[REDIS_ADDR_MAX + 300];

	if (rc == NULL || status == REDIS_OK)
		return;
	bool sentinel = ac == rc->sentinel;
	rc_forget_context(rc, ac); /* hiredis frees ac after this callback */
	if (sentinel && rc->state == RC_DISCOVERING) {
		str_printf(why, sizeof(why), "connect failed: %s",
			   ac->errstr[0] != '\0' ? ac->errstr : "error");
		rc_next_sentinel(rc, why);
		return;
	}
	str_printf(why, sizeof(why), "redis %s: connect failed: %s",
		   rc->master[0] != '\0' ? rc->master : "sentinel",
		   ac->errstr[0] != '\0' ? ac->errstr : "error");
	rc_fail(rc, why);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	struct redis_client *rc = ac->data;
	char why[REDIS_ADDR_MAX + 300];

	(void)status;
	if (rc == NULL)
		return; /* freed by us */
	bool sentinel = ac == rc->sentinel;
	rc_forget_context(rc, ac);
	if (sentinel && rc->state == RC_DISCOVERING) {
		rc_next_sentinel(rc, "connection lost");
		return;
	}
	str_printf(why, sizeof(why), "redis %s: connection lost: %s",
		   rc->master, ac->errstr[0] != '\0' ? ac->errstr : "closed");
	rc_fail(rc, why);
}

/* NULL with why set when the connection cannot even start. */
static redisAsyncContext *rc_open(struct redis_client *rc, const char *host,
				  int port, char *why, size_t whysize)
{
	redisAsyncContext *ac = redisAsyncConnect(host, port);

	if (ac == NULL) {
		str_printf(why, whysize, "redis: out of memory");
		return NULL;
	}
	if (ac->err != 0) {
		str_printf(why, whysize, "redis %s:%d: %s", host, port, ac->errstr);
		redisAsyncFree(ac);
		return NULL;
	}
	ac->data = rc;
	redisLibeventAttach(ac, rc->base);
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	return ac;
}

static void on_auth(redisAsyncContext *ac, void *r, void *privdata)
{
	struct redis_client *rc = ac->data;
	const char *err = redis_reply_error(r);
	(void)privdata;
	if (rc == NULL || r == NULL || err == NULL)
		return;
	char why[REDIS_ADDR_MAX + 300];
	str_printf(why, sizeof(why), "redis %s: AUTH failed: %s", rc->master, err);
	rc_fail(rc, why);
}

static void on_role(redisAsyncContext *ac, void *r, void *privdata)
{
	struct redis_client *rc = ac->data;
	redisReply *reply = r;
	char why[REDIS_ADDR_MAX + 300];
	(void)privdata;

	if (rc == NULL || reply == NULL || ac != rc->cmd ||
	    rc->state != RC_CONNECTING)
		return;
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
	    reply->element[0]->type != REDIS_REPLY_STRING) {
		str_printf(why, sizeof(why), "redis %s: ROLE failed: %s", rc->master,
			   redis_reply_error(reply) != NULL ? reply->str : "bad reply");
		rc_fail(rc, why);
		return;
	}
	if (strcmp(reply->element[0]->str, "master") != 0) {
		str_printf(why, sizeof(why), "redis %s is a %s, not the master",
			   rc->master, reply->element[0]->str);
		rc_fail(rc, why);
		return;
	}
	rc->role_ok = true;
	rc_check_ready(rc);
}

static void on_subscribe(redisAsyncContext *ac, void *r, void *privdata)
{
	struct redis_client *rc = ac->data;
	redisReply *reply = r;
	(void)privdata;

	if (rc == NULL || reply == NULL || ac != rc->sub ||
	    reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
	    reply->element[0]->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(reply->element[0]->str, "subscribe") == 0) {
		rc->subscribed = true;
		rc_check_ready(rc);
	} else if (strcmp(reply->element[0]->str, "message") == 0 &&
		   reply->element[2]->type == REDIS_REPLY_STRING &&
		   rc->state == RC_READY && rc->cbs.message != NULL) {
		rc->cbs.message(rc->ctx, reply->element[2]->str,
				reply->element[2]->len);
	}
}

static void rc_send_auth(struct redis_client *rc, redisAsyncContext *ac)
{
	if (rc->set.password != NULL && rc->set.password[0] != '\0')
		redisAsyncCommand(ac, on_auth, NULL, "AUTH %s", rc->set.password);
}

static void rc_connect_master(struct redis_client *rc, const char *addr)
{
	char host[REDIS_ADDR_MAX];
	int port;
	char why[REDIS_ADDR_MAX + 300];

	if (!split_addr(addr, host, sizeof(host), &port)) {
		str_printf(why, sizeof(why), "redis: invalid address %s", addr);
		rc_fail(rc, why);
		return;
	}
	str_copy(str_cstr(addr), rc->master, sizeof(rc->master));
	rc->state = RC_CONNECTING;
	net_timer_start(rc->connect_timer, (unsigned int)rc->set.timeout_msecs * 2,
			false);
	rc->cmd = rc_open(rc, host, port, why, sizeof(why));
	if (rc->cmd == NULL) {
		rc_fail(rc, why);
		return;
	}
	rc->sub = rc_open(rc, host, port, why, sizeof(why));
	if (rc->sub == NULL) {
		rc_fail(rc, why);
		return;
	}
	rc_send_auth(rc, rc->cmd);
	rc_send_auth(rc, rc->sub);
	redisAsyncCommand(rc->cmd, on_role, NULL, "ROLE");
	if (rc->set.channel != NULL)
		redisAsyncCommand(rc->sub, on_subscribe, NULL, "SUBSCRIBE %s",
				  rc->set.channel);
	else
		rc->subscribed = true;
}

static void rc_next_sentinel(struct redis_client *rc, const char *why);

static void on_sentinel_reply(redisAsyncContext *ac, void *r, void *privdata)
{
	struct redis_client *rc = ac->data;
	redisReply *reply = r;
	char addr[REDIS_ADDR_MAX];
	(void)privdata;

	/* a closing context's queued command is answered NULL: only the
	 * current sentinel's answer counts */
	if (rc == NULL || ac != rc->sentinel || rc->state != RC_DISCOVERING)
		return;
	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY ||
	    reply->elements != 2 ||
	    reply->element[0]->type != REDIS_REPLY_STRING ||
	    reply->element[1]->type != REDIS_REPLY_STRING) {
		rc_next_sentinel(rc, reply == NULL ? "no answer" :
				 reply->type == REDIS_REPLY_NIL ? "master unknown" :
				 "bad answer");
		return;
	}
	if (strchr(reply->element[0]->str, ':') != NULL)
		str_printf(addr, sizeof(addr), "[%s]:%s", reply->element[0]->str,
			   reply->element[1]->str);
	else
		str_printf(addr, sizeof(addr), "%s:%s", reply->element[0]->str,
			   reply->element[1]->str);
	/* done with the sentinel (freeing in its callback is deferred) */
	rc_free_context(&rc->sentinel);
	rc_connect_master(rc, addr);
}

static void rc_ask_sentinel(struct redis_client *rc)
{
	char host[REDIS_ADDR_MAX];
	int port;
	const char *addr = rc->set.sentinels[rc->sentinel_idx];

	rc->state = RC_DISCOVERING;
	rc->master[0] = '\0';
	if (!split_addr(addr, host, sizeof(host), &port)) {
		rc_next_sentinel(rc, "invalid address");
		return;
	}
	char why[REDIS_ADDR_MAX + 300];
	/* each sentinel gets the connect timeout of its own */
	net_timer_start(rc->connect_timer, (unsigned int)rc->set.timeout_msecs * 2,
			false);
	rc->sentinel = rc_open(rc, host, port, why, sizeof(why));
	if (rc->sentinel == NULL) {
		rc_next_sentinel(rc, why);
		return;
	}
	redisAsyncCommand(rc->sentinel, on_sentinel_reply, NULL,
			  "SENTINEL get-master-addr-by-name %s",
			  rc->set.sentinel_master);
}

static void rc_next_sentinel(struct redis_client *rc, const char *why)
{
	log_warnx("redis: sentinel %s: %s", rc->set.sentinels[rc->sentinel_idx],
		  why);
	rc_free_context(&rc->sentinel);
	/* the next attempt starts with the next sentinel, not the first:
	 * a dead first one must not hide the others */
	rc->sentinel_idx = (rc->sentinel_idx + 1) % rc->set.sentinel_count;
	if (++rc->sentinel_tries >= rc->set.sentinel_count) {
		rc_fail(rc, "redis: no sentinel knows the master");
		return;
	}
	rc_ask_sentinel(rc);
}

void redis_client_start(struct redis_client *rc)
{
	if (rc->state != RC_IDLE)
		return;
	net_timer_stop(rc->retry_timer);
	if (rc->set.sentinel_count > 0) {
		rc->sentinel_tries = 0;
		rc_ask_sentinel(rc);
	} else {
		rc_connect_master(rc, rc->set.address);
	}
}

struct redis_client *redis_client_new(struct event_base *base,
				      const struct redis_client_settings *set,
				      const struct redis_client_callbacks *cbs,
				      void *ctx)
{
	struct redis_client *rc = xcalloc(1, sizeof(*rc));

	rc->base = base;
	rc->set = *set;
	rc->set.address = dup_or_null(set->address != NULL ? set->address : "");
	for (size_t i = 0; i < set->sentinel_count && i < REDIS_SENTINELS_MAX; i++)
		rc->set.sentinels[i] = xstrdup(set->sentinels[i]);
	if (rc->set.sentinel_count > REDIS_SENTINELS_MAX)
		rc->set.sentinel_count = REDIS_SENTINELS_MAX;
	rc->set.sentinel_master = dup_or_null(set->sentinel_master != NULL ?
					      set->sentinel_master : "mymaster");
	rc->set.password = dup_or_null(set->password);
	rc->set.channel = dup_or_null(set->channel);
	if (rc->set.timeout_msecs == 0)
		rc->set.timeout_msecs = 500;
	if (rc->set.reconnect_msecs == 0)
		rc->set.reconnect_msecs = 1000;
	rc->cbs = *cbs;
	rc->ctx = ctx;
	rc->retry_timer = net_timer_new(base, rc_retry, rc);
	rc->connect_timer = net_timer_new(base, rc_connect_timeout, rc);
	return rc;
}

void redis_client_free(struct redis_client **rcp)
{
	struct redis_client *rc = *rcp;
	if (rc == NULL)
		return;
	*rcp = NULL;
	rc_teardown(rc);
	net_timer_free(&rc->retry_timer);
	net_timer_free(&rc->connect_timer);
	free_owned(rc->set.address);
	for (size_t i = 0; i < rc->set.sentinel_count; i++)
		free_owned(rc->set.sentinels[i]);
	free_owned(rc->set.sentinel_master);
	free_owned(rc->set.password);
	free_owned(rc->set.channel);
	free(rc);
}

bool redis_client_ready(const struct redis_client *rc)
{
	return rc->state == RC_READY;
}

const char *redis_client_master(const struct redis_client *rc)
{
	return rc->state == RC_READY ? rc->master : "";
}

/* ---- commands ----------------------------------------------------------- */

static void command_free(struct rc_command *c)
{
	net_timer_free(&c->timer);
	free(c);
}

static void on_command_reply(redisAsyncContext *ac, void *r, void *privdata)
{
	struct rc_command *c = privdata;
	redisReply *reply = r;
	(void)ac;

	if (!c->answered) {
		c->answered = true;
		net_timer_stop(c->timer);
		c->cb(reply, c->ctx);
	}
	if (reply != NULL && reply->type == REDIS_REPLY_ERROR &&
	    strncmp(reply->str, "READONLY", 8) == 0 && c->rc != NULL &&
	    ac->data == c->rc) {
		/* a failover demoted our master: find the new one */
		rc_fail(c->rc, "redis: the master became a replica (READONLY)");
	}
	command_free(c);
}

static void on_command_timeout(void *context)
{
	struct rc_command *c = context;
	struct redis_client *rc = c->rc;
	char why[REDIS_ADDR_MAX + 64];

	if (c->answered)
		return;
	c->answered = true;
	c->cb(NULL, c->ctx);
	/* hiredis still owns c and calls on_command_reply(NULL) when the
	 * connection is torn down below, which frees it */
	str_printf(why, sizeof(why), "redis %s: no answer within %llu ms",
		   rc->master, (unsigned long long)rc->set.timeout_msecs);
	if (rc->state == RC_READY)
		rc_fail(rc, why);
}

void redis_client_command(struct redis_client *rc, redis_reply_fn *cb,
			  void *ctx, int argc, const char *const *argv,
			  const size_t *argvlen)
{
	const char *args[REDIS_ARGS_MAX];

	if (rc->state != RC_READY || rc->cmd == NULL || argc > REDIS_ARGS_MAX) {
		cb(NULL, ctx);
		return;
	}
	for (int i = 0; i < argc; i++)
		args[i] = argv[i];
	struct rc_command *c = xcalloc(1, sizeof(*c));
	c->rc = rc;
	c->cb = cb;
	c->ctx = ctx;
	c->timer = net_timer_new(rc->base, on_command_timeout, c);
	if (redisAsyncCommandArgv(rc->cmd, on_command_reply, c, argc,
				  args, argvlen) != REDIS_OK) {
		command_free(c);
		cb(NULL, ctx);
		return;
	}
	net_timer_start(c->timer, (unsigned int)rc->set.timeout_msecs, false);
}

void redis_client_commandv(struct redis_client *rc, redis_reply_fn *cb,
			   void *ctx, int argc, const char *const *argv)
{
	size_t lens[REDIS_ARGS_MAX];
	if (argc > REDIS_ARGS_MAX) {
		cb(NULL, ctx);
		return;
	}
	for (int i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	redis_client_command(rc, cb, ctx, argc, argv, lens);
}
