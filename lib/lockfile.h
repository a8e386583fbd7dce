#ifndef MR_LIB_LOCKFILE_H
#define MR_LIB_LOCKFILE_H

#include <stddef.h>

#define LOCKFILE_TIMEOUT (-2)

/* Takes an exclusive fcntl lock on path (created 0600, O_NOFOLLOW), per
 * open file description where the kernel has it (two threads of one
 * process exclude each other too). F_SETLKW could only time out through a
 * signal, which a library must not use, so it polls with back-off until
 * timeout_msecs. The holder writes "pid=P host=H" into the file, which the
 * timeout message of the next one names. Returns the fd (close it to
 * unlock), LOCKFILE_TIMEOUT, or -1; err gets the message for both. */
int lockfile_take(const char *path, unsigned int timeout_msecs, char *err,
		  size_t errsize);

#endif
