#include "auth_cache.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "auth_hash.h"
#include "str.h"
#include "xmalloc.h"

#define CACHE_SALT_LEN 16
#define CACHE_MAC_LEN 32
#define CACHE_KEY_LEN 32

struct cache_entry {
	struct cache_entry *hnext;
	struct cache_entry *lru_prev, *lru_next; /* prev = more recent */
	uint64_t hash;
	uint64_t expires_ms;
	size_t bytes;
	bool negative;
	bool has_pw;
	uint8_t salt[CACHE_SALT_LEN];
	uint8_t pw_mac[CACHE_MAC_LEN];
	struct auth_fields *fields, *ufields;
	char user[];
};

struct auth_cache {
	struct auth_cache_settings set;
	struct cache_entry **buckets;
	size_t nbuckets; /* power of two */
	struct cache_entry *lru_head, *lru_tail;
	size_t count, bytes;
	uint64_t hits, misses, evictions;
	uint8_t hash_key[AUTH_HASH_KEY_SIZE];
	uint8_t mac_key[CACHE_KEY_LEN];
};

void auth_cache_settings_init(struct auth_cache_settings *set)
{
	set->ttl_ms = AUTH_CACHE_DEFAULT_TTL_MS;
	set->negative_ttl_ms = AUTH_CACHE_DEFAULT_NEGATIVE_TTL_MS;
	set->max_entries = AUTH_CACHE_DEFAULT_MAX_ENTRIES;
	set->max_bytes = AUTH_CACHE_DEFAULT_MAX_BYTES;
}

struct auth_cache *auth_cache_new(const struct auth_cache_settings *set)
{
	struct auth_cache *c = xcalloc(1, sizeof(*c));

	c->set = *set;
	c->nbuckets = 64;
	c->buckets = xcalloc(c->nbuckets, sizeof(*c->buckets));
	auth_hash_random_key(c->hash_key);
	auth_random_bytes(c->mac_key, sizeof(c->mac_key));
	return c;
}

static void entry_free(struct cache_entry *e)
{
	auth_fields_free(&e->fields);
	auth_fields_free(&e->ufields);
	str_wipe(e, sizeof(*e) + strlen(e->user) + 1);
	free(e);
}

static void lru_unlink(struct auth_cache *c, struct cache_entry *e)
{
	if (e->lru_prev != NULL)
		e->lru_prev->lru_next = e->lru_next;
	else
		c->lru_head = e->lru_next;
	if (e->lru_next != NULL)
		e->lru_next->lru_prev = e->lru_prev;
	else
		c->lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void lru_push_head(struct auth_cache *c, struct cache_entry *e)
{
	e->lru_prev = NULL;
	e->lru_next = c->lru_head;
	if (c->lru_head != NULL)
		c->lru_head->lru_prev = e;
	c->lru_head = e;
	if (c->lru_tail == NULL)
		c->lru_tail = e;
}

static struct cache_entry **find_slot(struct auth_cache *c, const char *user,
				      uint64_t hash)
{
	struct cache_entry **pp = &c->buckets[hash & (c->nbuckets - 1)];

	while (*pp != NULL) {
		if ((*pp)->hash == hash && strcmp((*pp)->user, user) == 0)
			return pp;
		pp = &(*pp)->hnext;
	}
	return pp;
}

static void entry_remove(struct auth_cache *c, struct cache_entry *e)
{
	struct cache_entry **pp = find_slot(c, e->user, e->hash);

	if (*pp == e)
		*pp = e->hnext;
	lru_unlink(c, e);
	c->count--;
	c->bytes -= e->bytes;
	entry_free(e);
}

static void grow(struct auth_cache *c)
{
	size_t n = c->nbuckets * 2;
	struct cache_entry **b = xcalloc(n, sizeof(*b));

	for (size_t i = 0; i < c->nbuckets; i++) {
		struct cache_entry *e = c->buckets[i];
		while (e != NULL) {
			struct cache_entry *next = e->hnext;
			struct cache_entry **slot = &b[e->hash & (n - 1)];
			e->hnext = *slot;
			*slot = e;
			e = next;
		}
	}
	free(c->buckets);
	c->buckets = b;
	c->nbuckets = n;
}

static bool pw_mac(const struct auth_cache *c, const uint8_t *salt,
		   const char *password, uint8_t out[CACHE_MAC_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int n = 0;
	bool ok;

	if (ctx == NULL)
		return false;
	ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	     EVP_DigestUpdate(ctx, c->mac_key, sizeof(c->mac_key)) == 1 &&
	     EVP_DigestUpdate(ctx, salt, CACHE_SALT_LEN) == 1 &&
	     EVP_DigestUpdate(ctx, password, strlen(password)) == 1 &&
	     EVP_DigestFinal_ex(ctx, out, &n) == 1 && n == CACHE_MAC_LEN;
	EVP_MD_CTX_free(ctx);
	return ok;
}

void auth_cache_free(struct auth_cache **cache)
{
	struct auth_cache *c = *cache;

	if (c == NULL)
		return;
	auth_cache_clear(c);
	free(c->buckets);
	str_wipe(c, sizeof(*c));
	free(c);
	*cache = NULL;
}

enum auth_cache_result auth_cache_lookup(struct auth_cache *c, const char *user,
					 const char *password, uint64_t now_ms,
					 struct auth_fields **fields_r,
					 struct auth_fields **userdb_fields_r)
{
	uint64_t hash = auth_hash(c->hash_key, user, strlen(user));
	struct cache_entry *e = *find_slot(c, user, hash);

	if (fields_r != NULL)
		*fields_r = NULL;
	if (userdb_fields_r != NULL)
		*userdb_fields_r = NULL;
	if (e == NULL) {
		c->misses++;
		return AUTH_CACHE_MISS;
	}
	if (now_ms >= e->expires_ms) {
		entry_remove(c, e);
		c->misses++;
		return AUTH_CACHE_MISS;
	}
	if (e->negative) {
		lru_unlink(c, e);
		lru_push_head(c, e);
		c->hits++;
		return AUTH_CACHE_HIT_UNKNOWN;
	}
	if (password != NULL) {
		uint8_t mac[CACHE_MAC_LEN];
		bool eq = e->has_pw && pw_mac(c, e->salt, password, mac) &&
			  CRYPTO_memcmp(mac, e->pw_mac, sizeof(mac)) == 0;
		str_wipe(mac, sizeof(mac));
		if (!eq) {
			c->misses++;
			return AUTH_CACHE_MISS;
		}
	}
	lru_unlink(c, e);
	lru_push_head(c, e);
	if (fields_r != NULL)
		*fields_r = e->fields == NULL ? auth_fields_new()
					      : auth_fields_dup(e->fields);
	if (userdb_fields_r != NULL)
		*userdb_fields_r = e->ufields == NULL
				       ? auth_fields_new()
				       : auth_fields_dup(e->ufields);
	c->hits++;
	return AUTH_CACHE_HIT;
}

static void evict(struct auth_cache *c)
{
	while (c->lru_tail != NULL &&
	       ((c->set.max_entries != 0 && c->count > c->set.max_entries) ||
		(c->set.max_bytes != 0 && c->bytes > c->set.max_bytes))) {
		entry_remove(c, c->lru_tail);
		c->evictions++;
	}
}

static void insert(struct auth_cache *c, struct cache_entry *e, uint64_t hash)
{
	struct cache_entry **slot = find_slot(c, e->user, hash);

	if (*slot != NULL)
		entry_remove(c, *slot);
	if (c->set.max_bytes != 0 && e->bytes > c->set.max_bytes) {
		entry_free(e);
		return;
	}
	e->hash = hash;
	slot = &c->buckets[hash & (c->nbuckets - 1)];
	e->hnext = *slot;
	*slot = e;
	lru_push_head(c, e);
	c->count++;
	c->bytes += e->bytes;
	evict(c);
	if (c->count > c->nbuckets)
		grow(c);
}

static struct cache_entry *entry_new(const char *user)
{
	size_t len = strlen(user);
	struct cache_entry *e = xcalloc(1, sizeof(*e) + len + 1);

	memcpy(e->user, user, len + 1);
	e->bytes = sizeof(*e) + len + 1;
	return e;
}

void auth_cache_put(struct auth_cache *c, const char *user,
		    const char *password, const struct auth_fields *fields,
		    const struct auth_fields *userdb_fields, uint64_t now_ms)
{
	if (c->set.ttl_ms == 0)
		return;
	struct cache_entry *e = entry_new(user);
	e->expires_ms = now_ms + c->set.ttl_ms;
	if (password != NULL) {
		auth_random_bytes(e->salt, sizeof(e->salt));
		e->has_pw = pw_mac(c, e->salt, password, e->pw_mac);
	}
	e->fields = auth_fields_dup(fields);
	e->ufields = auth_fields_dup(userdb_fields);
	e->bytes +=
	    auth_fields_memsize(e->fields) + auth_fields_memsize(e->ufields);
	insert(c, e, auth_hash(c->hash_key, user, strlen(user)));
}

void auth_cache_put_unknown(struct auth_cache *c, const char *user,
			    uint64_t now_ms)
{
	if (c->set.negative_ttl_ms == 0)
		return;
	struct cache_entry *e = entry_new(user);
	e->negative = true;
	e->expires_ms = now_ms + c->set.negative_ttl_ms;
	insert(c, e, auth_hash(c->hash_key, user, strlen(user)));
}

void auth_cache_remove(struct auth_cache *c, const char *user)
{
	uint64_t hash = auth_hash(c->hash_key, user, strlen(user));
	struct cache_entry *e = *find_slot(c, user, hash);

	if (e != NULL)
		entry_remove(c, e);
}

void auth_cache_clear(struct auth_cache *c)
{
	while (c->lru_head != NULL)
		entry_remove(c, c->lru_head);
}

void auth_cache_get_stats(const struct auth_cache *c,
			  struct auth_cache_stats *stats_r)
{
	stats_r->entries = c->count;
	stats_r->bytes = c->bytes;
	stats_r->hits = c->hits;
	stats_r->misses = c->misses;
	stats_r->evictions = c->evictions;
}
