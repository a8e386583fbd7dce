/*
 * Connections per client IP, shared by all workers. A connection touches
 * it twice (accept and close), never per byte, so a striped mutex is
 * cheap; each stripe is a small open-addressing table.
 */
#include "proxy.h"

#include <pthread.h>
#include <string.h>

#include "ring/placement.h"
#include "xmalloc.h"

#define IPLIMIT_STRIPES 64

struct ip_count {
	uint8_t addr[16];
	uint8_t family_len; /* 4 or 16; 0 = empty slot */
	unsigned int count;
};

struct iplimit_stripe {
	pthread_mutex_t lock;
	struct ip_count *slots;
	size_t size;  /* power of two */
	size_t used;
};

struct iplimit {
	struct iplimit_stripe stripes[IPLIMIT_STRIPES];
};

static size_t addr_key(const struct net_addr *a, uint8_t out[16])
{
	if (a->u.sa.sa_family == AF_INET) {
		memcpy(out, &a->u.sin.sin_addr, 4);
		return 4;
	}
	memcpy(out, &a->u.sin6.sin6_addr, 16);
	return 16;
}

struct iplimit *iplimit_new(void)
{
	struct iplimit *lim = xcalloc(1, sizeof(*lim));
	for (size_t i = 0; i < IPLIMIT_STRIPES; i++)
		pthread_mutex_init(&lim->stripes[i].lock, NULL);
	return lim;
}

void iplimit_free(struct iplimit **limp)
{
	struct iplimit *lim = *limp;
	if (lim == NULL)
		return;
	for (size_t i = 0; i < IPLIMIT_STRIPES; i++) {
		pthread_mutex_destroy(&lim->stripes[i].lock);
		free(lim->stripes[i].slots);
	}
	free(lim);
	*limp = NULL;
}

static struct ip_count *stripe_find(struct iplimit_stripe *s,
				    const uint8_t *key, size_t len,
				    uint64_t h, bool insert)
{
	if (s->size == 0) {
		if (!insert)
			return NULL;
		s->size = 16;
		s->slots = xcalloc(s->size, sizeof(*s->slots));
	}
	if (insert && (s->used + 1) * 4 > s->size * 3) {
		/* grow and rehash */
		struct ip_count *old = s->slots;
		size_t old_size = s->size;
		s->size *= 2;
		s->slots = xcalloc(s->size, sizeof(*s->slots));
		s->used = 0;
		for (size_t i = 0; i < old_size; i++) {
			if (old[i].family_len == 0)
				continue;
			uint64_t oh = ring_hash(str_from((const char *)old[i].addr,
							 old[i].family_len));
			struct ip_count *slot = stripe_find(s, old[i].addr,
							    old[i].family_len, oh, true);
			*slot = old[i];
		}
		free(old);
	}
	for (size_t i = (size_t)(h >> 6) & (s->size - 1);;
	     i = (i + 1) & (s->size - 1)) {
		struct ip_count *slot = &s->slots[i];
		if (slot->family_len == 0) {
			if (!insert)
				return NULL;
			memcpy(slot->addr, key, len);
			slot->family_len = (uint8_t)len;
			slot->count = 0;
			s->used++;
			return slot;
		}
		if (slot->family_len == len && memcmp(slot->addr, key, len) == 0)
			return slot;
	}
}

/* Removes a slot and re-inserts the run after it (linear probing). */
static void stripe_remove(struct iplimit_stripe *s, struct ip_count *slot)
{
	size_t i = (size_t)(slot - s->slots);
	slot->family_len = 0;
	s->used--;
	for (size_t j = (i + 1) & (s->size - 1); s->slots[j].family_len != 0;
	     j = (j + 1) & (s->size - 1)) {
		struct ip_count moved = s->slots[j];
		s->slots[j].family_len = 0;
		s->used--;
		uint64_t h = ring_hash(str_from((const char *)moved.addr,
						moved.family_len));
		struct ip_count *dst = stripe_find(s, moved.addr, moved.family_len,
						   h, true);
		*dst = moved;
	}
}

bool iplimit_acquire(struct iplimit *lim, const struct net_addr *addr,
		     unsigned int max)
{
	uint8_t key[16];
	size_t len = addr_key(addr, key);
	uint64_t h = ring_hash(str_from((const char *)key, len));
	struct iplimit_stripe *s = &lim->stripes[h % IPLIMIT_STRIPES];
	bool ok;

	pthread_mutex_lock(&s->lock);
	struct ip_count *slot = stripe_find(s, key, len, h, true);
	ok = max == 0 || slot->count < max;
	if (ok)
		slot->count++;
	else if (slot->count == 0)
		stripe_remove(s, slot);
	pthread_mutex_unlock(&s->lock);
	return ok;
}

void iplimit_release(struct iplimit *lim, const struct net_addr *addr)
{
	uint8_t key[16];
	size_t len = addr_key(addr, key);
	uint64_t h = ring_hash(str_from((const char *)key, len));
	struct iplimit_stripe *s = &lim->stripes[h % IPLIMIT_STRIPES];

	pthread_mutex_lock(&s->lock);
	struct ip_count *slot = stripe_find(s, key, len, h, false);
	if (slot != NULL && --slot->count == 0)
		stripe_remove(s, slot);
	pthread_mutex_unlock(&s->lock);
}
