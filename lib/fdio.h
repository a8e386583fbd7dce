#ifndef MR_LIB_FDIO_H
#define MR_LIB_FDIO_H

#include <stddef.h>

/* Writes all of data to a blocking fd (files, pipes at start-up), going
 * on after EINTR and short writes. 0, or -1 with errno set. Not for the
 * event loop's non-blocking sockets (lib/conn does those). */
int fd_write_all(int fd, const void *data, size_t len);

#endif
