#ifndef MR_SUPERVISOR_H
#define MR_SUPERVISOR_H

/*
 * Process model of mailring-backend with processes > 1: the first process
 * becomes a supervisor that runs no sessions. It forks `processes` node
 * processes; each binds the listeners with SO_REUSEPORT, so the kernel
 * spreads connections over them, and runs its own worker threads. A node
 * process that dies (a crash, the OOM killer, kill -9) takes only its own
 * sessions with it: the supervisor logs the death and starts a
 * replacement (at most one per second), while the other processes keep
 * serving.
 *
 * Signals: SIGTERM/SIGINT to the supervisor are passed on to every node
 * process and the supervisor exits when they have; SIGHUP is passed on.
 * The admin socket (admin_socket) is the supervisor's: a "kick USER" line
 * goes to every node process over its control socket and the answers are
 * summed.
 *
 * The supervisor creates no threads and no event loop before forking, so
 * a node process starts as clean as a single-process daemon.
 */

#include <stdbool.h>

/* Runs the supervisor. Returns in the parent when it is time to exit
 * (false, *exit_code_r set), and in every node process it forks (true,
 * *control_fd_r: the node's end of its control socket, see node_admin.h).
 * grace_msecs: how long node processes get after SIGTERM before SIGKILL
 * (plus a margin). */
bool supervisor_run(unsigned int processes, const char *admin_socket,
		    unsigned int grace_msecs, int *control_fd_r,
		    int *exit_code_r);

#endif
