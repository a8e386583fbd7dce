#include "io_pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "str.h"
#include "xmalloc.h"

#define IO_POOL_MAX_THREADS 256

struct io_job {
	struct io_job *next;
	struct net_worker *worker;
	io_pool_run_fn *run;
	net_worker_fn *done;
	void *context;
	_Atomic bool *running;
};

struct io_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;      /* a job was queued, or stopping */
	pthread_cond_t idle_cond; /* pending reached 0 */
	struct io_job *head, *tail;
	unsigned int pending; /* queued + running */
	bool stopping;
	pthread_t *threads;
	unsigned int nthreads;
};

static void *pool_thread(void *arg)
{
	struct io_pool *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (p->head == NULL && !p->stopping)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->head == NULL)
			break;
		struct io_job *job = p->head;
		p->head = job->next;
		if (p->head == NULL)
			p->tail = NULL;
		pthread_mutex_unlock(&p->lock);
		job->run(job->context);
		if (job->running != NULL)
			atomic_store_explicit(job->running, false,
					      memory_order_release);
		/* done runs on the worker; if its loop already ended the
		 * session goes with the worker's deinit */
		(void)net_worker_run(job->worker, job->done, job->context);
		free(job);
		pthread_mutex_lock(&p->lock);
		if (--p->pending == 0)
			pthread_cond_broadcast(&p->idle_cond);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

struct io_pool *io_pool_new(unsigned int threads, char *err, size_t errsize)
{
	struct io_pool *p = xcalloc(1, sizeof(*p));

	if (threads == 0)
		threads = 1;
	if (threads > IO_POOL_MAX_THREADS)
		threads = IO_POOL_MAX_THREADS;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	pthread_cond_init(&p->idle_cond, NULL);
	p->threads = xcalloc(threads, sizeof(*p->threads));
	for (unsigned int i = 0; i < threads; i++) {
		int r = pthread_create(&p->threads[i], NULL, pool_thread, p);
		if (r != 0) {
			str_printf(err, errsize, "io pool: pthread_create: %s",
				   strerror(r));
			p->nthreads = i;
			io_pool_free(&p);
			return NULL;
		}
		p->nthreads = i + 1;
	}
	return p;
}

int io_pool_submit(struct io_pool *p, struct net_worker *worker,
		   io_pool_run_fn *run, net_worker_fn *done, void *context,
		   _Atomic bool *running)
{
	struct io_job *job = xcalloc(1, sizeof(*job));

	job->worker = worker;
	job->run = run;
	job->done = done;
	job->context = context;
	job->running = running;
	pthread_mutex_lock(&p->lock);
	if (p->stopping) {
		pthread_mutex_unlock(&p->lock);
		free(job);
		return -1;
	}
	if (running != NULL)
		atomic_store(running, true);
	if (p->tail != NULL)
		p->tail->next = job;
	else
		p->head = job;
	p->tail = job;
	p->pending++;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

unsigned int io_pool_pending(struct io_pool *p)
{
	pthread_mutex_lock(&p->lock);
	unsigned int n = p->pending;
	pthread_mutex_unlock(&p->lock);
	return n;
}

void io_pool_free(struct io_pool **pp)
{
	struct io_pool *p = *pp;

	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	while (p->pending > 0)
		pthread_cond_wait(&p->idle_cond, &p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (unsigned int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	pthread_cond_destroy(&p->idle_cond);
	free(p->threads);
	free(p);
	*pp = NULL;
}

static pthread_once_t slow_once = PTHREAD_ONCE_INIT;
static char slow_user[256];
static unsigned int slow_msecs;

static void slow_init(void)
{
	const char *v = getenv("MAILRING_TEST_SLOW_USER");
	struct str user, ms;
	uint64_t n;

	if (v == NULL || !str_split(str_cstr(v), ':', &user, &ms) ||
	    !str_to_u64(ms, 600000, &n) ||
	    !str_copy(user, slow_user, sizeof(slow_user)))
		return;
	slow_msecs = (unsigned int)n;
}

unsigned int io_pool_test_delay_msecs(const char *user)
{
	pthread_once(&slow_once, slow_init);
	if (user == NULL || slow_msecs == 0 || strcmp(user, slow_user) != 0)
		return 0;
	return slow_msecs;
}

static void sleep_msecs(unsigned int msecs)
{
	struct timespec ts = { msecs / 1000, (long)(msecs % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

void io_pool_test_delay(const char *user)
{
	unsigned int delay = io_pool_test_delay_msecs(user);
	if (delay > 0)
		sleep_msecs(delay);
}

void io_pool_job_wait(const _Atomic bool *running)
{
	while (atomic_load_explicit(running, memory_order_acquire))
		sleep_msecs(5);
}
