#include "xmalloc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Noreturn static void xalloc_die(size_t size)
{
	/* No logging machinery here: it may itself need memory. */
	fprintf(stderr, "fatal: out of memory allocating %zu bytes\n", size);
	abort();
}

_Noreturn void xalloc_fail_abort(void)
{
	xalloc_die(0);
	abort();
}

void *xmalloc(size_t size)
{
	void *p = malloc(size == 0 ? 1 : size);
	if (p == NULL)
		xalloc_die(size);
	return p;
}

void *xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb == 0 ? 1 : nmemb, size == 0 ? 1 : size);
	if (p == NULL)
		xalloc_die(nmemb * size);
	return p;
}

void *xrealloc(void *ptr, size_t size)
{
	void *p = realloc(ptr, size == 0 ? 1 : size);
	if (p == NULL)
		xalloc_die(size);
	return p;
}

void *xreallocarray(void *ptr, size_t nmemb, size_t size)
{
	if (size != 0 && nmemb > SIZE_MAX / size)
		xalloc_die(SIZE_MAX);
	return xrealloc(ptr, nmemb * size);
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t len)
{
	size_t n = strnlen(s, len);
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}
