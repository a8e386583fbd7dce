#ifndef MR_PROXY_HEALTH_H
#define MR_PROXY_HEALTH_H

/* Active health checks of the backends (see health.c), on the main loop.
 * health_interval = 0 turns them off. */

struct event_base;

void health_start(struct event_base *main_base);
void health_stop(void);
/* A login failed to connect to backend (refused, timed out): counted as
 * one failed check at the next round (passive health). Any thread. */
void health_passive_failure(const char *backend);

#endif
