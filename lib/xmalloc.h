#ifndef MR_XMALLOC_H
#define MR_XMALLOC_H

#include <stddef.h>
#include <stdlib.h>

/* Allocation wrappers that abort the process on failure, so error paths in
 * protocol code are about the protocol and never about malloc. */
void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
/* reallocarray semantics: multiplication overflow aborts too. */
void *xreallocarray(void *ptr, size_t nmemb, size_t size);
char *xstrdup(const char *s);
/* Copies at most len bytes and always NUL-terminates. */
char *xstrndup(const char *s, size_t len);
/* Aborts like a failed allocation (for libraries that report allocation
 * failure as NULL, e.g. libevent's event_new). */
_Noreturn void xalloc_fail_abort(void);
/* Frees *p and sets it to NULL. */
#define xfree(pp) do { free(*(pp)); *(pp) = NULL; } while (0)

#endif
