#ifndef MR_IO_POOL_H
#define MR_IO_POOL_H

/*
 * Threads that do a session's disk work off its worker's event loop, so
 * that one user's slow disk (or a huge mailbox) does not stall the other
 * sessions of that worker: while a job runs, its loop keeps serving
 * everyone else.
 *
 * A job is run(context) on a pool thread, then done(worker, context) back
 * on the worker thread that submitted it (net_worker_run). The caller
 * guarantees that nothing else touches what run() uses until done() runs
 * (the IMAP session marks itself busy and its loop leaves it alone).
 *
 * One pool per process, shared by the workers; jobs run in FIFO order.
 */

#include <stdbool.h>

#include "net.h"

struct io_pool;

typedef void io_pool_run_fn(void *context);

/* Starts threads threads (>= 1). NULL with err set on failure. */
struct io_pool *io_pool_new(unsigned int threads, char *err, size_t errsize);
/* Queues a job; done runs on worker's thread afterwards. *running (may be
 * NULL) is set now and cleared (release order) as soon as run returned,
 * before done is queued: what io_pool_job_wait waits for. Returns 0, or
 * -1 when the pool is stopping (nothing runs, *running is clear). */
int io_pool_submit(struct io_pool *pool, struct net_worker *worker,
		   io_pool_run_fn *run, net_worker_fn *done, void *context,
		   _Atomic bool *running);
/* Jobs queued or running. */
unsigned int io_pool_pending(struct io_pool *pool);
/* Waits for queued and running jobs to finish (their done callbacks are
 * queued to the workers; a worker whose loop ended drops them), then
 * joins the threads and frees *pool. Safe on NULL. */
void io_pool_free(struct io_pool **pool);

/* Test hook: a job run for user sleeps msecs first
 * (MAILRING_TEST_SLOW_USER=user:msecs in the environment), to show in
 * tests that a slow disk stalls only its own sessions. The delay
 * configured for user (0 when none), and a sleep of it. */
unsigned int io_pool_test_delay_msecs(const char *user);
void io_pool_test_delay(const char *user);

/* After a worker's loop ended, a job's done callback will not run: waits
 * until the pool thread has left the job's session (*running as given to
 * io_pool_submit). */
void io_pool_job_wait(const _Atomic bool *running);

#endif
