#include "lockfile.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "net.h"
#include "str.h"

static int try_lock(int fd)
{
	struct flock fl = {
		.l_type = F_WRLCK,
		.l_whence = SEEK_SET,
	};
#ifdef F_OFD_SETLK
	return fcntl(fd, F_OFD_SETLK, &fl);
#else
	return fcntl(fd, F_SETLK, &fl);
#endif
}

static void write_holder(int fd, const char *path)
{
	char host[256] = "?";
	char holder[320];

	if (gethostname(host, sizeof(host)) == -1)
		str_copy(STR("?"), host, sizeof(host));
	host[sizeof(host) - 1] = '\0';
	int n = str_printf(holder, sizeof(holder), "pid=%ld host=%s\n",
			   (long)getpid(), host);
	if (n > 0 && ftruncate(fd, 0) == 0 && pwrite(fd, holder, (size_t)n, 0) != n)
		log_warn("lock: writing the holder to %s", path);
}

int lockfile_take(const char *path, unsigned int timeout_msecs, char *err,
		  size_t errsize)
{
	uint64_t deadline = net_monotonic_msecs() + timeout_msecs;
	unsigned int sleep_msecs = 1;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd == -1) {
		str_printf(err, errsize, "open(%s) failed: %s", path, strerror(errno));
		return -1;
	}
	while (try_lock(fd) == -1) {
		if (errno != EAGAIN && errno != EACCES && errno != EINTR) {
			str_printf(err, errsize, "fcntl(%s) failed: %s", path,
				   strerror(errno));
			close(fd);
			return -1;
		}
		uint64_t now = net_monotonic_msecs();
		if (now >= deadline) {
			char holder[128];
			ssize_t n = pread(fd, holder, sizeof(holder) - 1, 0);
			holder[n > 0 ? n : 0] = '\0';
			holder[strcspn(holder, "\n")] = '\0';
			str_printf(err, errsize, "timed out after %u ms waiting for "
				   "the lock %s (held by: %s)", timeout_msecs, path,
				   holder[0] != '\0' ? holder : "?");
			close(fd);
			return LOCKFILE_TIMEOUT;
		}
		if (sleep_msecs > deadline - now)
			sleep_msecs = (unsigned int)(deadline - now);
		struct timespec ts = {
			.tv_sec = sleep_msecs / 1000,
			.tv_nsec = (long)(sleep_msecs % 1000) * 1000000,
		};
		nanosleep(&ts, NULL);
		if (sleep_msecs < 50)
			sleep_msecs *= 2;
	}
	write_holder(fd, path);
	return fd;
}
