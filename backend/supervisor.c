#include "supervisor.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fdio.h"
#include "log.h"
#include "str.h"
#include "xmalloc.h"

#define SUPERVISOR_MAX_PROCESSES 64
#define RESTART_DELAY_MSECS 1000
#define KILL_MARGIN_MSECS 5000
#define ADMIN_LINE_MAX 512
#define ADMIN_CLIENT_MSECS 2000
#define CONTROL_ANSWER_MSECS 5000

struct node_proc {
	pid_t pid;      /* 0: not running */
	int control_fd; /* the supervisor's end; -1 when not running */
	uint64_t restart_at; /* monotonic msecs; 0: no restart pending */
};

static uint64_t now_msecs(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int admin_listen(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	if (!str_copy(str_cstr(path), sun.sun_path, sizeof(sun.sun_path)))
		return -1;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	(void)unlink(path);
	mode_t old = umask(0077);
	int r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (r == -1 || listen(fd, 8) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads one line from fd within msecs; the line without its LF in buf.
 * false on timeout, EOF or error. */
static bool read_line(int fd, char *buf, size_t size, int msecs)
{
	size_t len = 0;
	uint64_t deadline = now_msecs() + (uint64_t)msecs;

	while (len + 1 < size) {
		uint64_t now = now_msecs();
		if (now >= deadline)
			return false;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, (int)(deadline - now));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		ssize_t n = read(fd, buf + len, 1);
		if (n <= 0)
			return false;
		if (buf[len] == '\n') {
			if (len > 0 && buf[len - 1] == '\r')
				len--;
			buf[len] = '\0';
			return true;
		}
		len++;
	}
	return false;
}

static void handle_admin(int listen_fd, struct node_proc *procs,
			 unsigned int count)
{
	char line[ADMIN_LINE_MAX], answer[ADMIN_LINE_MAX], out[128];

	int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd == -1)
		return;
	if (!read_line(fd, line, sizeof(line), ADMIN_CLIENT_MSECS)) {
		(void)fd_write_all(fd, "ERR timeout\n", 12);
		close(fd);
		return;
	}
	if (strncmp(line, "kick ", 5) != 0 || line[5] == '\0') {
		const char *e = "ERR unknown command (kick USER)\n";
		(void)fd_write_all(fd, e, strlen(e));
		close(fd);
		return;
	}
	unsigned long total = 0;
	unsigned int failed = 0;
	static unsigned long request_seq;
	char req[ADMIN_LINE_MAX + 32], want[32];
	str_printf(want, sizeof(want), "#%lu ", ++request_seq);
	str_printf(req, sizeof(req), "%s%s\n", want, line);
	for (unsigned int i = 0; i < count; i++) {
		struct node_proc *p = &procs[i];
		uint64_t n;
		bool got = false;
		if (p->pid == 0 || p->control_fd < 0)
			continue;
		if (fd_write_all(p->control_fd, req, strlen(req)) == -1) {
			failed++;
			continue;
		}
		/* answers to earlier, timed-out requests are skipped */
		while (read_line(p->control_fd, answer, sizeof(answer),
				 CONTROL_ANSWER_MSECS)) {
			if (strncmp(answer, want, strlen(want)) == 0) {
				got = true;
				break;
			}
		}
		const char *a = answer + strlen(want);
		if (!got || strncmp(a, "OK kicked=", 10) != 0 ||
		    !str_to_u64(str_cstr(a + 10), UINT32_MAX, &n)) {
			failed++;
			continue;
		}
		total += (unsigned long)n;
	}
	if (failed > 0)
		str_printf(out, sizeof(out), "ERR kicked=%lu, %u processes did "
			   "not answer\n", total, failed);
	else
		str_printf(out, sizeof(out), "OK kicked=%lu\n", total);
	log_info("admin: %s: %lu sessions closed", line, total);
	(void)fd_write_all(fd, out, strlen(out));
	close(fd);
}

/* In the child: drops what belongs to the supervisor. */
static void child_setup(int sfd, int admin_fd, struct node_proc *procs,
			unsigned int count, const sigset_t *oldmask)
{
	close(sfd);
	if (admin_fd >= 0)
		close(admin_fd);
	for (unsigned int i = 0; i < count; i++) {
		if (procs[i].control_fd >= 0)
			close(procs[i].control_fd);
	}
	/* the node goes when its supervisor goes */
	(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
	sigprocmask(SIG_SETMASK, oldmask, NULL);
}

/* Forks node process idx. Returns 1 in the parent, 0 in the child (with
 * *control_fd_r), -1 on failure. */
static int start_node(struct node_proc *procs, unsigned int count,
		      unsigned int idx, int sfd, int admin_fd,
		      const sigset_t *oldmask, int *control_fd_r)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
		log_error("supervisor: socketpair: %s", strerror(errno));
		return -1;
	}
	pid_t pid = fork();
	if (pid == -1) {
		log_error("supervisor: fork: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (pid == 0) {
		close(sv[0]);
		child_setup(sfd, admin_fd, procs, count, oldmask);
		*control_fd_r = sv[1];
		return 0;
	}
	close(sv[1]);
	procs[idx].pid = pid;
	procs[idx].control_fd = sv[0];
	procs[idx].restart_at = 0;
	log_info("supervisor: node process %u started (pid %ld)", idx + 1,
		 (long)pid);
	return 1;
}

static void reap(struct node_proc *procs, unsigned int count, bool stopping)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (unsigned int i = 0; i < count; i++) {
			struct node_proc *p = &procs[i];
			if (p->pid != pid)
				continue;
			p->pid = 0;
			if (p->control_fd >= 0)
				close(p->control_fd);
			p->control_fd = -1;
			if (stopping)
				break;
			if (WIFSIGNALED(status))
				log_error("supervisor: node process %u (pid %ld) "
					  "killed by signal %d; its sessions "
					  "are gone, restarting it",
					  i + 1, (long)pid, WTERMSIG(status));
			else
				log_error("supervisor: node process %u (pid %ld) "
					  "exited with status %d; restarting it",
					  i + 1, (long)pid, WEXITSTATUS(status));
			p->restart_at = now_msecs() + RESTART_DELAY_MSECS;
			break;
		}
	}
}

static void signal_all(struct node_proc *procs, unsigned int count, int sig)
{
	for (unsigned int i = 0; i < count; i++) {
		if (procs[i].pid > 0)
			(void)kill(procs[i].pid, sig);
	}
}

bool supervisor_run(unsigned int processes, const char *admin_socket,
		    unsigned int grace_msecs, int *control_fd_r,
		    int *exit_code_r)
{
	struct node_proc procs[SUPERVISOR_MAX_PROCESSES];
	sigset_t mask, oldmask;
	bool stopping = false;
	uint64_t kill_at = 0;

	if (processes > SUPERVISOR_MAX_PROCESSES)
		processes = SUPERVISOR_MAX_PROCESSES;
	for (unsigned int i = 0; i < processes; i++) {
		procs[i].pid = 0;
		procs[i].control_fd = -1;
		procs[i].restart_at = 0;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, &oldmask);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd == -1)
		fatal("supervisor: signalfd");
	int admin_fd = -1;
	if (admin_socket != NULL && admin_socket[0] != '\0') {
		admin_fd = admin_listen(admin_socket);
		if (admin_fd == -1)
			fatal("admin_socket: bind(%s)", admin_socket);
	}
	log_notice("supervisor: starting %u node processes", processes);
	for (unsigned int i = 0; i < processes; i++) {
		int r = start_node(procs, processes, i, sfd, admin_fd, &oldmask,
				   control_fd_r);
		if (r == 0)
			return true;
		if (r < 0)
			procs[i].restart_at = now_msecs() + RESTART_DELAY_MSECS;
	}
	for (;;) {
		unsigned int alive = 0;
		uint64_t next = 0, now = now_msecs();
		for (unsigned int i = 0; i < processes; i++) {
			if (procs[i].pid > 0)
				alive++;
			else if (!stopping && procs[i].restart_at != 0) {
				if (procs[i].restart_at <= now) {
					int r = start_node(procs, processes, i,
							   sfd, admin_fd,
							   &oldmask,
							   control_fd_r);
					if (r == 0)
						return true;
					if (r < 0)
						procs[i].restart_at =
						    now + RESTART_DELAY_MSECS;
					else
						alive++;
				}
				if (procs[i].restart_at != 0 &&
				    (next == 0 || procs[i].restart_at < next))
					next = procs[i].restart_at;
			}
		}
		if (stopping && alive == 0)
			break;
		if (stopping && now >= kill_at) {
			log_warnx("supervisor: node processes did not stop in "
				  "time; killing them");
			signal_all(procs, processes, SIGKILL);
			kill_at = now + KILL_MARGIN_MSECS;
		}
		if (stopping && (next == 0 || kill_at < next))
			next = kill_at;
		int timeout = next == 0 ? -1
			      : next > now ? (int)(next - now)
					   : 0;
		struct pollfd pfd[2] = {
			{ .fd = sfd, .events = POLLIN },
			{ .fd = admin_fd, .events = POLLIN },
		};
		int r = poll(pfd, admin_fd >= 0 && !stopping ? 2 : 1, timeout);
		if (r < 0 && errno != EINTR)
			fatal("supervisor: poll");
		if (r > 0 && (pfd[0].revents & POLLIN) != 0) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo == SIGCHLD) {
					reap(procs, processes, stopping);
				} else if (si.ssi_signo == SIGHUP) {
					log_notice("supervisor: SIGHUP: "
						   "passed on");
					signal_all(procs, processes, SIGHUP);
				} else if (!stopping) {
					log_notice("supervisor: %s: stopping",
						   si.ssi_signo == SIGINT
						       ? "SIGINT"
						       : "SIGTERM");
					stopping = true;
					kill_at = now_msecs() + grace_msecs +
						  KILL_MARGIN_MSECS;
					signal_all(procs, processes, SIGTERM);
				}
				/* one at a time keeps the loop simple */
				break;
			}
		}
		if (r > 0 && admin_fd >= 0 && !stopping &&
		    (pfd[1].revents & POLLIN) != 0)
			handle_admin(admin_fd, procs, processes);
	}
	if (admin_fd >= 0) {
		close(admin_fd);
		(void)unlink(admin_socket);
	}
	close(sfd);
	log_notice("supervisor: stopped");
	*exit_code_r = 0;
	return false;
}
