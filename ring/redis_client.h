#ifndef MR_RING_REDIS_CLIENT_H
#define MR_RING_REDIS_CLIENT_H

/*
 * An asynchronous Redis client for the ring store, on one libevent loop
 * (hiredis and its libevent adapter). Two connections: one for commands,
 * one subscribed to the event channel. It finds the master directly
 * (redis_address) or through Sentinel (redis_sentinels + master name),
 * reconnects by itself, and follows a failover: a master that answers
 * READONLY or goes away is looked up again.
 *
 * Every command has a deadline: its callback gets the reply, or NULL when
 * the deadline passed or the connection was lost, exactly once. A command
 * that times out also drops the connection (a Redis that does not answer
 * in time is treated as gone: the caller degrades, I5) and a reconnect
 * follows after redis_reconnect_msecs.
 *
 * Everything runs on the loop's thread; nothing here blocks.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct redisReply;

#define REDIS_SENTINELS_MAX 8
/* the most arguments one command may have */
#define REDIS_ARGS_MAX 256

struct redis_client_settings {
	/* "host:port" of the master, or "" with sentinels */
	const char *address;
	/* "host:port" each; used when count > 0 */
	const char *sentinels[REDIS_SENTINELS_MAX];
	size_t sentinel_count;
	const char *sentinel_master;
	const char *password;          /* AUTH, or NULL */
	const char *channel;           /* subscribed to; NULL = none */
	uint64_t timeout_msecs;        /* per command and per connect */
	uint64_t reconnect_msecs;      /* pause between attempts */
};

struct redis_client_callbacks {
	/* Both connections are up (after a fresh connect to a master; the
	 * caller re-asserts its state here: the master may be new). */
	void (*connected)(void *ctx, const char *master_addr);
	/* The store became unreachable (once per outage); why is for logs. */
	void (*disconnected)(void *ctx, const char *why);
	/* A message on the channel. */
	void (*message)(void *ctx, const char *data, size_t len);
};

struct redis_client;

typedef void redis_reply_fn(const struct redisReply *reply, void *ctx);

struct redis_client *redis_client_new(struct event_base *base,
				      const struct redis_client_settings *set,
				      const struct redis_client_callbacks *cbs,
				      void *ctx);
/* Closes both connections; pending callbacks get NULL. */
void redis_client_free(struct redis_client **rc);
/* Starts connecting (the first attempt at once). */
void redis_client_start(struct redis_client *rc);
bool redis_client_ready(const struct redis_client *rc);
/* The master in use ("host:port"), or "" while there is none. */
const char *redis_client_master(const struct redis_client *rc);

/* Sends a command. cb(NULL) when not connected (called before return),
 * on timeout, or when the connection is lost. argv strings are copied. */
void redis_client_command(struct redis_client *rc, redis_reply_fn *cb,
			  void *ctx, int argc, const char *const *argv,
			  const size_t *argvlen);
/* The same with NUL-terminated arguments. */
void redis_client_commandv(struct redis_client *rc, redis_reply_fn *cb,
			   void *ctx, int argc, const char *const *argv);

/* Reply helpers: an error reply's text, or NULL when it is not one. */
const char *redis_reply_error(const struct redisReply *reply);

#endif
