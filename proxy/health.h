#ifndef MR_PROXY_HEALTH_H
#define MR_PROXY_HEALTH_H

/* Active health checks of the backends (see health.c), on the main loop.
 * health_interval = 0 turns them off. */

struct event_base;

void health_start(struct event_base *main_base);
void health_stop(void);

#endif
