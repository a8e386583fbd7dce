#ifndef MR_NODE_ADMIN_H
#define MR_NODE_ADMIN_H

/*
 * The mail node's admin socket (admin_socket, a unix stream socket, mode
 * 0600): one command line per connection, one answer line back.
 *
 *   kick USER   closes USER's IMAP and POP3 sessions on this node (the
 *               director's move/flush: "* BYE Disconnected by the
 *               administrator." / "-ERR [SYS/TEMP] ..."); answers
 *               "OK kicked=N"
 *
 * Errors answer "ERR <text>". `mailring-backend kick USER` is the client.
 * Runs on the main thread; the kick itself runs on every worker
 * (net_workers_run_all_wait). A client gets 2 s to send its line.
 */

#include <stdio.h>

struct event_base;
struct net_workers;
struct node_admin;

struct node_admin *node_admin_new(struct event_base *base, const char *path,
				  struct net_workers *workers, char *err,
				  size_t errsize);
/* A node process under the supervisor (supervisor.h): the same commands
 * arrive on fd, the node's end of its control socket, one line at a time,
 * each answered on fd. NULL on error. */
struct node_admin *node_admin_new_control(struct event_base *base, int fd,
					  struct net_workers *workers);
/* Closes the socket and removes its path; safe on NULL. */
void node_admin_free(struct node_admin **admin);

/* Client side: sends line to the socket at path and prints the answer to
 * out. Returns 0 when the answer starts with "OK", 1 otherwise, -1 when
 * the socket cannot be used (message on err). */
int node_admin_request(const char *path, const char *line, FILE *out,
		       FILE *err);

#endif
