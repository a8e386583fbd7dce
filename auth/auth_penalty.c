#include "auth_penalty.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "auth_hash.h"
#include "str.h"
#include "xmalloc.h"

#define PEN_NONE UINT32_MAX
#define PEN_KEY_LEN 17
#define PEN_MAX_FAILURES 32

enum pen_kind {
	PEN_KIND_IP = 1,        /* 16 address bytes (IPv4 mapped) */
	PEN_KIND_IP_OPAQUE = 2, /* hash of an unparsable address string */
	PEN_KIND_USER = 3,      /* hash of the user name */
};

struct pen_entry {
	uint8_t key[PEN_KEY_LEN];
	uint32_t hnext;
	uint32_t lru_prev, lru_next; /* prev = more recent failure */
	uint32_t failures;
	uint32_t last_checksum;
	uint64_t last_ms;
};

struct auth_penalty {
	struct auth_penalty_settings set;
	struct pen_entry *entries; /* set.max_entries, fixed */
	uint32_t *buckets;
	size_t nbuckets; /* power of two */
	uint32_t free_head;
	uint32_t lru_head, lru_tail;
	size_t count;
	uint8_t hash_key[AUTH_HASH_KEY_SIZE];
	uint8_t user_key1[AUTH_HASH_KEY_SIZE], user_key2[AUTH_HASH_KEY_SIZE];
};

void auth_penalty_settings_init(struct auth_penalty_settings *set)
{
	set->base_ms = AUTH_PENALTY_DEFAULT_BASE_MS;
	set->max_ms = AUTH_PENALTY_DEFAULT_MAX_MS;
	set->decay_ms = AUTH_PENALTY_DEFAULT_DECAY_MS;
	set->max_entries = AUTH_PENALTY_DEFAULT_MAX_ENTRIES;
	set->ipv6_prefix_bits = AUTH_PENALTY_DEFAULT_IPV6_PREFIX;
}

struct auth_penalty *auth_penalty_new(const struct auth_penalty_settings *set,
				      const char **error_r)
{
	if (set->max_entries == 0 || set->max_entries >= PEN_NONE) {
		*error_r = "penalty table size must be 1..2^32-2";
		return NULL;
	}
	if (set->base_ms == 0 || set->base_ms > set->max_ms) {
		*error_r = "penalty base delay must be 1..max delay";
		return NULL;
	}
	if (set->ipv6_prefix_bits < 1 || set->ipv6_prefix_bits > 128) {
		*error_r = "penalty IPv6 prefix must be 1..128 bits";
		return NULL;
	}
	struct auth_penalty *p = xcalloc(1, sizeof(*p));
	p->set = *set;
	p->entries = xcalloc(set->max_entries, sizeof(*p->entries));
	p->nbuckets = 16;
	while (p->nbuckets < set->max_entries)
		p->nbuckets *= 2;
	p->buckets = xreallocarray(NULL, p->nbuckets, sizeof(*p->buckets));
	for (size_t i = 0; i < p->nbuckets; i++)
		p->buckets[i] = PEN_NONE;
	for (size_t i = 0; i < set->max_entries; i++)
		p->entries[i].hnext =
		    i + 1 < set->max_entries ? (uint32_t)i + 1 : PEN_NONE;
	p->free_head = 0;
	p->lru_head = p->lru_tail = PEN_NONE;
	auth_hash_random_key(p->hash_key);
	auth_hash_random_key(p->user_key1);
	auth_hash_random_key(p->user_key2);
	return p;
}

void auth_penalty_free(struct auth_penalty **penalty)
{
	struct auth_penalty *p = *penalty;

	if (p == NULL)
		return;
	free(p->entries);
	free(p->buckets);
	free(p);
	*penalty = NULL;
}

static void put64(uint8_t *dst, uint64_t v)
{
	for (unsigned i = 0; i < 8; i++)
		dst[i] = (uint8_t)(v >> (8 * i));
}

/* Builds the key for an IP; false when ip is NULL or empty. */
static bool ip_key(const struct auth_penalty *p, const char *ip,
		   uint8_t key[PEN_KEY_LEN])
{
	struct in_addr a4;
	struct in6_addr a6;

	if (ip == NULL || ip[0] == '\0')
		return false;
	memset(key, 0, PEN_KEY_LEN);
	if (inet_pton(AF_INET, ip, &a4) == 1) {
		key[0] = PEN_KIND_IP;
		key[11] = 0xff;
		key[12] = 0xff;
		memcpy(key + 13, &a4, 4);
		return true;
	}
	if (inet_pton(AF_INET6, ip, &a6) == 1) {
		key[0] = PEN_KIND_IP;
		memcpy(key + 1, &a6, 16);
		bool mapped = IN6_IS_ADDR_V4MAPPED(&a6);
		if (!mapped) {
			unsigned bits = p->set.ipv6_prefix_bits;
			for (unsigned i = 0; i < 16; i++) {
				if (bits >= 8) {
					bits -= 8;
					continue;
				}
				key[1 + i] &= (uint8_t)(0xff00u >> bits);
				bits = 0;
			}
		}
		return true;
	}
	key[0] = PEN_KIND_IP_OPAQUE;
	put64(key + 1, auth_hash(p->user_key1, ip, strlen(ip)));
	put64(key + 9, auth_hash(p->user_key2, ip, strlen(ip)));
	return true;
}

static bool user_key(const struct auth_penalty *p, const char *user,
		     uint8_t key[PEN_KEY_LEN])
{
	if (user == NULL || user[0] == '\0')
		return false;
	key[0] = PEN_KIND_USER;
	put64(key + 1, auth_hash(p->user_key1, user, strlen(user)));
	put64(key + 9, auth_hash(p->user_key2, user, strlen(user)));
	return true;
}

static uint32_t *bucket(const struct auth_penalty *p,
			const uint8_t key[PEN_KEY_LEN])
{
	uint64_t h = auth_hash(p->hash_key, key, PEN_KEY_LEN);

	return &p->buckets[h & (p->nbuckets - 1)];
}

static uint32_t find(const struct auth_penalty *p,
		     const uint8_t key[PEN_KEY_LEN])
{
	uint32_t i = *bucket(p, key);

	while (i != PEN_NONE &&
	       memcmp(p->entries[i].key, key, PEN_KEY_LEN) != 0)
		i = p->entries[i].hnext;
	return i;
}

static void lru_unlink(struct auth_penalty *p, uint32_t i)
{
	struct pen_entry *e = &p->entries[i];

	if (e->lru_prev != PEN_NONE)
		p->entries[e->lru_prev].lru_next = e->lru_next;
	else
		p->lru_head = e->lru_next;
	if (e->lru_next != PEN_NONE)
		p->entries[e->lru_next].lru_prev = e->lru_prev;
	else
		p->lru_tail = e->lru_prev;
}

static void lru_push_head(struct auth_penalty *p, uint32_t i)
{
	struct pen_entry *e = &p->entries[i];

	e->lru_prev = PEN_NONE;
	e->lru_next = p->lru_head;
	if (p->lru_head != PEN_NONE)
		p->entries[p->lru_head].lru_prev = i;
	p->lru_head = i;
	if (p->lru_tail == PEN_NONE)
		p->lru_tail = i;
}

static void remove_entry(struct auth_penalty *p, uint32_t i)
{
	uint32_t *pp = bucket(p, p->entries[i].key);

	while (*pp != i)
		pp = &p->entries[*pp].hnext;
	*pp = p->entries[i].hnext;
	lru_unlink(p, i);
	memset(&p->entries[i], 0, sizeof(p->entries[i]));
	p->entries[i].hnext = p->free_head;
	p->free_head = i;
	p->count--;
}

static bool expired(const struct auth_penalty *p, const struct pen_entry *e,
		    uint64_t now_ms)
{
	return now_ms >= e->last_ms && now_ms - e->last_ms >= p->set.decay_ms;
}

static uint32_t delay_for(const struct auth_penalty *p, uint32_t failures)
{
	if (failures == 0)
		return 0;
	uint64_t d = p->set.base_ms;
	for (uint32_t i = 1; i < failures && d < p->set.max_ms; i++)
		d *= 2;
	return d > p->set.max_ms ? p->set.max_ms : (uint32_t)d;
}

static uint32_t key_delay(struct auth_penalty *p,
			  const uint8_t key[PEN_KEY_LEN], uint64_t now_ms)
{
	uint32_t i = find(p, key);

	if (i == PEN_NONE)
		return 0;
	if (expired(p, &p->entries[i], now_ms)) {
		remove_entry(p, i);
		return 0;
	}
	return delay_for(p, p->entries[i].failures);
}

uint32_t auth_penalty_get(struct auth_penalty *p, const char *ip,
			  const char *user, uint64_t now_ms)
{
	uint8_t key[PEN_KEY_LEN];
	uint32_t d = 0, d2;

	if (ip_key(p, ip, key))
		d = key_delay(p, key, now_ms);
	if (user_key(p, user, key)) {
		d2 = key_delay(p, key, now_ms);
		if (d2 > d)
			d = d2;
	}
	return d;
}

static void key_failure(struct auth_penalty *p, const uint8_t key[PEN_KEY_LEN],
			uint32_t pw_checksum, uint64_t now_ms)
{
	uint32_t i = find(p, key);
	struct pen_entry *e;

	if (i != PEN_NONE && expired(p, &p->entries[i], now_ms)) {
		remove_entry(p, i);
		i = PEN_NONE;
	}
	if (i == PEN_NONE) {
		if (p->free_head == PEN_NONE)
			remove_entry(p, p->lru_tail);
		i = p->free_head;
		e = &p->entries[i];
		p->free_head = e->hnext;
		memset(e, 0, sizeof(*e));
		memcpy(e->key, key, PEN_KEY_LEN);
		uint32_t *b = bucket(p, key);
		e->hnext = *b;
		*b = i;
		p->count++;
	} else {
		e = &p->entries[i];
		lru_unlink(p, i);
	}
	if (!(pw_checksum != 0 && e->failures > 0 &&
	      e->last_checksum == pw_checksum) &&
	    e->failures < PEN_MAX_FAILURES)
		e->failures++;
	e->last_checksum = pw_checksum;
	e->last_ms = now_ms;
	lru_push_head(p, i);
}

void auth_penalty_failure(struct auth_penalty *p, const char *ip,
			  const char *user, uint32_t pw_checksum,
			  uint64_t now_ms)
{
	uint8_t key[PEN_KEY_LEN];

	if (ip_key(p, ip, key))
		key_failure(p, key, pw_checksum, now_ms);
	if (user_key(p, user, key))
		key_failure(p, key, pw_checksum, now_ms);
}

void auth_penalty_success(struct auth_penalty *p, const char *ip,
			  const char *user, uint64_t now_ms)
{
	uint8_t key[PEN_KEY_LEN];
	(void)ip;
	(void)now_ms;

	if (user_key(p, user, key)) {
		uint32_t i = find(p, key);
		if (i != PEN_NONE)
			remove_entry(p, i);
	}
}

size_t auth_penalty_count(const struct auth_penalty *p)
{
	return p->count;
}
