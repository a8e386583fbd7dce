/*
 * The redis store (see directing_redis.h and docs/director.md, "Redis
 * store"). Keys, all under redis_prefix P:
 *
 *   P b:NAME    hash  w weight, t tag, s up|down, by admin|health|"",
 *                     g generation (a mapping names the generation it was
 *                     made in; down and flush bump it, voiding them all),
 *                     fl epoch of a flush/down under way (0 = none),
 *                     fs the state it ends in, fat when it started
 *   P backends  set   the backend names
 *   P u:USER    hash  b backend, g its generation, s n(ormal)|m(oving),
 *                     n sessions on all proxies, to/e/mat during a move;
 *                     TTL user_expire, refreshed while sessions live
 *   P bu:NAME   set   users mapped to NAME (listing; stale members are
 *                     skipped and removed when listed)
 *   P proxies   zset  proxy name -> last heartbeat (Redis TIME, ms)
 *   P h:NAME    hash  proxy name -> 1 failing | 0 ok (health votes)
 *   P ack:EPOCH set   proxies that closed their sessions for a kick round
 *   P epoch     int   kick rounds
 *   P events    channel: "backends", "kick-user E USER",
 *                        "kick-backend E NAME flush|down", "kick USER FROM"
 *
 * The scripts build key names from P (so the store is one Redis master
 * or a Sentinel-managed pair; not Redis Cluster). Time in scripts is
 * Redis's own clock, so proxies with skewed clocks agree on liveness.
 */
#include "directing_redis.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "json_flat.h"
#include "log.h"
#include "net.h"
#include "proxy.h"
#include "ring/redis_client.h"
#include "str.h"
#include "xmalloc.h"

#define LOOKUP_RETRY_MSECS 100
#define LOOKUP_KICK_RETRIES 3
#define ACK_POLL_MSECS 50
/* users per re-assertion script: 3 arguments each, plus the TTL and
 * EVAL's own 4 */
#define ASSERT_BATCH 60
/* backends per seeding script: 5 arguments each */
#define SEED_CHUNK 48
_Static_assert(1 + 3 * ASSERT_BATCH + 4 <= REDIS_ARGS_MAX, "assert batch");
_Static_assert(5 * SEED_CHUNK + 4 <= REDIS_ARGS_MAX, "seed chunk");
#define LIVE_PROXIES_MAX 64
#define USER_MAX 256

/* ---- the scripts --------------------------------------------------------- */

#define LUA_COMMON \
	"local P = ARGV[1]\n" \
	"local function now_ms() local t = redis.call('TIME')\n" \
	"  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end\n" \
	"local function bkey(n) return P .. 'b:' .. n end\n" \
	"local function ukey(u) return P .. 'u:' .. u end\n" \
	"local function live(dead) local now = now_ms()\n" \
	"  return redis.call('ZRANGEBYSCORE', P .. 'proxies', now - dead, '+inf') end\n" \
	"local function valid(m_b, m_g)\n" \
	"  if not m_b then return false end\n" \
	"  local b = redis.call('HMGET', bkey(m_b), 'g', 's', 'fl')\n" \
	"  return b[1] == m_g and b[2] == 'up' and (not b[3] or b[3] == '0')\n" \
	"end\n" \
	"local function takes(name)\n" \
	"  local b = redis.call('HMGET', bkey(name), 'g', 's', 'fl')\n" \
	"  if b[1] and b[2] == 'up' and (not b[3] or b[3] == '0') then return b[1] end\n" \
	"  return nil\n" \
	"end\n" \
	"local function flush_finish(name)\n" \
	"  local k = bkey(name)\n" \
	"  local fs = redis.call('HGET', k, 'fs')\n" \
	"  redis.call('HINCRBY', k, 'g', 1)\n" \
	"  redis.call('HSET', k, 'fl', 0)\n" \
	"  if fs == 'down-admin' then redis.call('HSET', k, 's', 'down', 'by', 'admin')\n" \
	"  elseif fs == 'down-health' then redis.call('HSET', k, 's', 'down', 'by', 'health') end\n" \
	"  if fs == 'remove' then\n" \
	"    redis.call('DEL', k, P .. 'h:' .. name)\n" \
	"    redis.call('SREM', P .. 'backends', name)\n" \
	"  end\n" \
	"  redis.call('HDEL', k, 'fs', 'fat')\n" \
	"  local n = redis.call('SCARD', P .. 'bu:' .. name)\n" \
	"  redis.call('UNLINK', P .. 'bu:' .. name)\n" \
	"  redis.call('PUBLISH', P .. 'events', 'backends')\n" \
	"  return n\n" \
	"end\n" \
	"local function move_finish(user, ttl)\n" \
	"  local k = ukey(user)\n" \
	"  local m = redis.call('HMGET', k, 'b', 'to')\n" \
	"  if not m[2] then return end\n" \
	"  local g = redis.call('HGET', bkey(m[2]), 'g')\n" \
	"  if m[1] then redis.call('SREM', P .. 'bu:' .. m[1], user) end\n" \
	"  if not g then redis.call('DEL', k) return end\n" \
	"  redis.call('HSET', k, 'b', m[2], 'g', g, 's', 'n', 'n', 0)\n" \
	"  redis.call('HDEL', k, 'to', 'mat', 'e')\n" \
	"  redis.call('PEXPIRE', k, ttl)\n" \
	"  redis.call('SADD', P .. 'bu:' .. m[2], user)\n" \
	"  redis.call('PUBLISH', P .. 'events', 'map ' .. m[2] .. ' ' .. user)\n" \
	"end\n"

/* ARGV: P user ttl stale candidates... -> {status, backend} */
static const char lua_route[] = LUA_COMMON
	"local user, ttl, stale = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])\n"
	"local k = ukey(user)\n"
	"local now = now_ms()\n"
	"local m = redis.call('HMGET', k, 'b', 'g', 's', 'mat')\n"
	"if m[3] == 'm' then\n"
	"  if now - tonumber(m[4] or 0) < stale then return {'busy', m[1] or ''} end\n"
	"  move_finish(user, ttl)\n"
	"  m = redis.call('HMGET', k, 'b', 'g', 's', 'mat')\n"
	"end\n"
	"if m[1] then\n"
	"  local b = redis.call('HMGET', bkey(m[1]), 'g', 's', 'fl', 'fat')\n"
	"  if b[1] and b[1] == m[2] then\n"
	"    if b[3] and b[3] ~= '0' then\n"
	"      if now - tonumber(b[4] or 0) < stale then return {'busy', m[1]} end\n"
	"      flush_finish(m[1])\n"
	"    elseif b[2] == 'up' then\n"
	"      redis.call('PEXPIRE', k, ttl)\n"
	"      return {'mapped', m[1]}\n"
	"    end\n"
	"  end\n"
	"  redis.call('SREM', P .. 'bu:' .. m[1], user)\n"
	"  redis.call('DEL', k)\n"
	"end\n"
	"for i = 5, #ARGV do\n"
	"  local name = ARGV[i]\n"
	"  local b = redis.call('HMGET', bkey(name), 'g', 's', 'w', 'fl')\n"
	"  if b[1] and b[2] == 'up' and tonumber(b[3] or 0) > 0 and (not b[4] or b[4] == '0') then\n"
	"    redis.call('HSET', k, 'b', name, 'g', b[1], 's', 'n', 'n', 0)\n"
	"    redis.call('PEXPIRE', k, ttl)\n"
	"    redis.call('SADD', P .. 'bu:' .. name, user)\n"
	"    redis.call('PUBLISH', P .. 'events', 'map ' .. name .. ' ' .. user)\n"
	"    return {'new', name}\n"
	"  end\n"
	"end\n"
	"return {'none', ''}\n";

/* ARGV: P user backend delta ttl -> 1 counted | 0 nothing to count |
 * "elsewhere BACKEND": a session that started on backend (routed while
 * degraded) finds the ring mapping the user elsewhere (I1 conflict). A
 * mapping of an older generation of its backend (flushed, down) counts
 * as none. */
static const char lua_session[] = LUA_COMMON
	"local user, backend = ARGV[2], ARGV[3]\n"
	"local k = ukey(user)\n"
	"local delta = tonumber(ARGV[4])\n"
	"local ttl = tonumber(ARGV[5])\n"
	"local m = redis.call('HMGET', k, 'b', 's', 'g')\n"
	"if m[2] == 'm' then return 0 end\n"
	"if valid(m[1], m[3]) then\n"
	"  if m[1] ~= backend then\n"
	"    if delta > 0 then return 'elsewhere ' .. m[1] end\n"
	"    return 0\n"
	"  end\n"
	"  local n = redis.call('HINCRBY', k, 'n', delta)\n"
	"  if n < 0 then redis.call('HSET', k, 'n', 0) end\n"
	"  redis.call('PEXPIRE', k, ttl)\n"
	"  return 1\n"
	"end\n"
	"if delta <= 0 then return 0 end\n"
	"local g = takes(backend)\n"
	"if not g then return 0 end\n"
	"if m[1] then redis.call('SREM', P .. 'bu:' .. m[1], user) end\n"
	"redis.call('DEL', k)\n"
	"redis.call('HSET', k, 'b', backend, 'g', g, 's', 'n', 'n', 1)\n"
	"redis.call('PEXPIRE', k, ttl)\n"
	"redis.call('SADD', P .. 'bu:' .. backend, user)\n"
	"redis.call('PUBLISH', P .. 'events', 'map ' .. backend .. ' ' .. user)\n"
	"return 1\n";

/* ARGV: P ttl (user backend sessions)... -> conflicts {user, ring's backend}...
 * The mappings of this proxy's live sessions: refreshed when the ring
 * agrees, made again where it lost them (set-if-absent; a mapping of an
 * older generation of its backend counts as lost), a conflict where the
 * ring maps the user elsewhere or the backend cannot take it. */
static const char lua_assert[] = LUA_COMMON
	"local ttl = tonumber(ARGV[2])\n"
	"local out = {}\n"
	"local alive = {}\n"
	"for i = 3, #ARGV - 2, 3 do\n"
	"  local user, backend, n = ARGV[i], ARGV[i + 1], ARGV[i + 2]\n"
	"  local k = ukey(user)\n"
	"  local m = redis.call('HMGET', k, 'b', 's', 'g')\n"
	"  if m[2] == 'm' then\n"
	"    -- being moved: the round closes our sessions\n"
	"  elseif valid(m[1], m[3]) then\n"
	"    if m[1] == backend then\n"
	"      redis.call('PEXPIRE', k, ttl)\n"
	"      table.insert(alive, backend) table.insert(alive, user)\n"
	"    else\n"
	"      table.insert(out, user) table.insert(out, m[1])\n"
	"    end\n"
	"  else\n"
	"    local g = takes(backend)\n"
	"    if g then\n"
	"      if m[1] then redis.call('SREM', P .. 'bu:' .. m[1], user) end\n"
	"      redis.call('DEL', k)\n"
	"      redis.call('HSET', k, 'b', backend, 'g', g, 's', 'n', 'n', n)\n"
	"      redis.call('PEXPIRE', k, ttl)\n"
	"      redis.call('SADD', P .. 'bu:' .. backend, user)\n"
	"      table.insert(alive, backend) table.insert(alive, user)\n"
	"    else\n"
	"      table.insert(out, user) table.insert(out, '')\n"
	"    end\n"
	"  end\n"
	"end\n"
	"if #alive > 0 then redis.call('PUBLISH', P .. 'events', 'alive ' .. table.concat(alive, ' ')) end\n"
	"return out\n";

/* ARGV: P name dead -> live proxy names */
static const char lua_heartbeat[] = LUA_COMMON
	"local now = now_ms()\n"
	"local dead = tonumber(ARGV[3])\n"
	"redis.call('ZADD', P .. 'proxies', now, ARGV[2])\n"
	"redis.call('ZREMRANGEBYSCORE', P .. 'proxies', '-inf', now - dead - 3600000)\n"
	"return redis.call('ZRANGEBYSCORE', P .. 'proxies', now - dead, '+inf')\n";

/* ARGV: P (name weight tag state host)...: creates the backends the ring
 * lacks (host "" = from the config files, else added at run time) */
static const char lua_seed[] = LUA_COMMON
	"local added = 0\n"
	"for i = 2, #ARGV - 4, 5 do\n"
	"  local k = bkey(ARGV[i])\n"
	"  if redis.call('EXISTS', k) == 0 then\n"
	"    redis.call('HSET', k, 'w', ARGV[i + 1], 't', ARGV[i + 2], 's', ARGV[i + 3], 'by', '', 'g', 0, 'fl', 0)\n"
	"    if ARGV[i + 4] ~= '' then redis.call('HSET', k, 'host', ARGV[i + 4]) end\n"
	"    added = added + 1\n"
	"  end\n"
	"  redis.call('SADD', P .. 'backends', ARGV[i])\n"
	"end\n"
	"if added > 0 then redis.call('PUBLISH', P .. 'events', 'backends') end\n"
	"return added\n";

/* ARGV: P -> {{name, weight, tag, state, by, flushing, users, host}...} */
static const char lua_load[] = LUA_COMMON
	"local out = {}\n"
	"for _, n in ipairs(redis.call('SMEMBERS', P .. 'backends')) do\n"
	"  local b = redis.call('HMGET', bkey(n), 'w', 't', 's', 'by', 'fl', 'host')\n"
	"  if b[1] then\n"
	"    table.insert(out, {n, b[1], b[2] or '', b[3] or 'up', b[4] or '', b[5] or '0',\n"
	"                       redis.call('SCARD', P .. 'bu:' .. n), b[6] or ''})\n"
	"  end\n"
	"end\n"
	"return out\n";

/* ARGV: P name weight */
static const char lua_set_weight[] = LUA_COMMON
	"local k = bkey(ARGV[2])\n"
	"if redis.call('EXISTS', k) == 0 then return 0 end\n"
	"redis.call('HSET', k, 'w', ARGV[3])\n"
	"redis.call('PUBLISH', P .. 'events', 'backends')\n"
	"return 1\n";

/* ARGV: P name weight host -> 1 added, 0 exists */
static const char lua_add[] = LUA_COMMON
	"local k = bkey(ARGV[2])\n"
	"if redis.call('EXISTS', k) == 1 then return 0 end\n"
	"redis.call('HSET', k, 'w', ARGV[3], 't', '', 's', 'up', 'by', '', 'g', 0, 'fl', 0, 'host', ARGV[4])\n"
	"redis.call('SADD', P .. 'backends', ARGV[2])\n"
	"redis.call('PUBLISH', P .. 'events', 'backends')\n"
	"return 1\n";

/* ARGV: P name: an admin's `up` */
static const char lua_set_up[] = LUA_COMMON
	"local k = bkey(ARGV[2])\n"
	"if redis.call('EXISTS', k) == 0 then return 0 end\n"
	"redis.call('HSET', k, 's', 'up', 'by', '')\n"
	"redis.call('PUBLISH', P .. 'events', 'backends')\n"
	"return 1\n";

/* ARGV: P name final_state dead why -> {epoch, {live...}} | {0} under way | {-1} unknown */
static const char lua_flush_mark[] = LUA_COMMON
	"local k = bkey(ARGV[2])\n"
	"if redis.call('EXISTS', k) == 0 then return {-1} end\n"
	"local fl = redis.call('HGET', k, 'fl')\n"
	"if fl and fl ~= '0' then return {0} end\n"
	"local e = redis.call('INCR', P .. 'epoch')\n"
	"redis.call('HSET', k, 'fl', e, 'fs', ARGV[3], 'fat', now_ms())\n"
	"local l = live(tonumber(ARGV[4]))\n"
	"redis.call('PUBLISH', P .. 'events', 'kick-backend ' .. e .. ' ' .. ARGV[2] .. ' ' .. ARGV[5])\n"
	"return {e, l}\n";

/* ARGV: P name epoch -> users unmapped, -1 when the round is not current */
static const char lua_flush_done[] = LUA_COMMON
	"if redis.call('HGET', bkey(ARGV[2]), 'fl') ~= ARGV[3] then return -1 end\n"
	"return flush_finish(ARGV[2])\n";

/* ARGV: P name -> {exists 0|1, users mapped} */
static const char lua_flush_size[] = LUA_COMMON
	"return {redis.call('EXISTS', bkey(ARGV[2])), redis.call('SCARD', P .. 'bu:' .. ARGV[2])}\n";

/* A paced flush's batch. ARGV: P name count dead
 * -> {epoch, {live...}, {users...}} | {0} nobody left | {-1} unknown */
static const char lua_flush_batch_mark[] = LUA_COMMON
	"local name, n = ARGV[2], tonumber(ARGV[3])\n"
	"local g = redis.call('HGET', bkey(name), 'g')\n"
	"if not g then return {-1} end\n"
	"local sk = P .. 'bu:' .. name\n"
	"local e = redis.call('INCR', P .. 'epoch')\n"
	"local now = now_ms()\n"
	"local users = {}\n"
	"while #users < n do\n"
	"  local u = redis.call('SPOP', sk)\n"
	"  if not u then break end\n"
	"  local m = redis.call('HMGET', ukey(u), 'b', 'g', 's')\n"
	"  if m[1] == name and m[2] == g and m[3] ~= 'm' then\n"
	"    redis.call('HSET', ukey(u), 's', 'm', 'to', '', 'mat', now, 'e', e)\n"
	"    table.insert(users, u)\n"
	"  end\n"
	"end\n"
	"if #users == 0 then return {0} end\n"
	"local fk = P .. 'fb:' .. e\n"
	"redis.call('SADD', fk, unpack(users))\n"
	"redis.call('PEXPIRE', fk, 600000)\n"
	"local l = live(tonumber(ARGV[4]))\n"
	"redis.call('PUBLISH', P .. 'events', 'kick-users ' .. e .. ' ' .. name .. ' ' .. table.concat(users, ' '))\n"
	"return {e, l, users}\n";

/* ARGV: P epoch -> users unmapped */
static const char lua_flush_batch_done[] = LUA_COMMON
	"local fk = P .. 'fb:' .. ARGV[2]\n"
	"local n = 0\n"
	"for _, u in ipairs(redis.call('SMEMBERS', fk)) do\n"
	"  if redis.call('HGET', ukey(u), 'e') == ARGV[2] then\n"
	"    redis.call('DEL', ukey(u))\n"
	"    n = n + 1\n"
	"  end\n"
	"end\n"
	"redis.call('DEL', fk)\n"
	"return n\n";

/* ARGV: P user target ttl dead -> {epoch, {live...}} | {-1} unknown target */
static const char lua_move_mark[] = LUA_COMMON
	"if redis.call('EXISTS', bkey(ARGV[3])) == 0 then return {-1} end\n"
	"local k = ukey(ARGV[2])\n"
	"local e = redis.call('INCR', P .. 'epoch')\n"
	"redis.call('HSET', k, 's', 'm', 'to', ARGV[3], 'mat', now_ms(), 'e', e)\n"
	"redis.call('PEXPIRE', k, tonumber(ARGV[4]))\n"
	"local l = live(tonumber(ARGV[5]))\n"
	"redis.call('PUBLISH', P .. 'events', 'kick-user ' .. e .. ' ' .. ARGV[2])\n"
	"return {e, l}\n";

/* ARGV: P user epoch ttl -> 1, or -1 when the round is not current */
static const char lua_move_done[] = LUA_COMMON
	"if redis.call('HGET', ukey(ARGV[2]), 'e') ~= ARGV[3] then return -1 end\n"
	"move_finish(ARGV[2], tonumber(ARGV[4]))\n"
	"return 1\n";

/* ARGV: P epoch name */
static const char lua_ack[] = LUA_COMMON
	"local k = P .. 'ack:' .. ARGV[2]\n"
	"redis.call('SADD', k, ARGV[3])\n"
	"redis.call('PEXPIRE', k, 600000)\n"
	"return 1\n";

/* ARGV: P name proxy vote(1 failing|0 ok) dead -> {'down'|'up'|'none', failing, live} */
static const char lua_health[] = LUA_COMMON
	"local k = bkey(ARGV[2])\n"
	"if redis.call('EXISTS', k) == 0 then return {'none', 0, 0} end\n"
	"local hk = P .. 'h:' .. ARGV[2]\n"
	"redis.call('HSET', hk, ARGV[3], ARGV[4])\n"
	"local l = live(tonumber(ARGV[5]))\n"
	"local fail, ok = 0, 0\n"
	"for _, p in ipairs(l) do\n"
	"  local v = redis.call('HGET', hk, p)\n"
	"  if v == '1' then fail = fail + 1 elseif v == '0' then ok = ok + 1 end\n"
	"end\n"
	"local n = #l\n"
	"if n == 0 then n = 1 end\n"
	"local b = redis.call('HMGET', k, 's', 'by', 'fl')\n"
	"if fail * 2 > n and b[1] == 'up' and (not b[3] or b[3] == '0') then return {'down', fail, n} end\n"
	"if ok * 2 > n and b[1] == 'down' and b[2] == 'health' then\n"
	"  redis.call('HSET', k, 's', 'up', 'by', '')\n"
	"  redis.call('PUBLISH', P .. 'events', 'backends')\n"
	"  return {'up', ok, n}\n"
	"end\n"
	"return {'none', fail, n}\n";

/* ARGV: P name -> {user, sessions}... (stale members removed) */
static const char lua_users[] = LUA_COMMON
	"local out = {}\n"
	"local sk = P .. 'bu:' .. ARGV[2]\n"
	"local g = redis.call('HGET', bkey(ARGV[2]), 'g')\n"
	"for _, u in ipairs(redis.call('SMEMBERS', sk)) do\n"
	"  local m = redis.call('HMGET', ukey(u), 'b', 'g', 'n')\n"
	"  if m[1] == ARGV[2] and m[2] == g then\n"
	"    table.insert(out, u) table.insert(out, m[3] or '0')\n"
	"  else\n"
	"    redis.call('SREM', sk, u)\n"
	"  end\n"
	"end\n"
	"return out\n";

/* ---- state --------------------------------------------------------------- */

enum lookup_state {
	LOOKUP_PENDING = 0,
	LOOKUP_ANSWERED,   /* handed to the worker's loop */
	LOOKUP_CANCELLED,  /* the worker lost interest: the store frees it */
};

struct directing_lookup {
	struct directing_lookup *next;    /* store queue */
	struct directing_lookup *pnext;   /* dr.pending (store thread) */
	_Atomic int state;
	struct event_base *base;          /* the worker's */
	directing_lookup_fn *cb;          /* worker-side only */
	void *ctx;
	char *user;
	char *tag;
	enum directing_lookup_result result;
	uint64_t started_msecs;
	uint64_t sent_usecs;
	unsigned int kick_seq;            /* kicks seen when the EVAL was sent */
	unsigned int kick_retries;
	struct net_timer *retry;          /* store thread */
};

enum job_kind {
	JOB_LOOKUP = 0,
	JOB_SESSION,
	JOB_VOTE,
	JOB_RELOAD,
	JOB_ADMIN,
};

enum admin_op {
	OP_STATUS = 0,
	OP_RING,
	OP_MAP,
	OP_USERS,
	OP_WEIGHT,
	OP_UP,
	OP_DOWN,
	OP_FLUSH,
	OP_MOVE,
	OP_KICK,
	OP_ADD,
	OP_REMOVE,
};

struct admin_job {
	enum admin_op op;
	bool async;            /* answered through the hook */
	uint64_t token;
	char user[USER_MAX];
	char backend[DIRECTOR_NAME_MAX];
	unsigned int weight;
	struct buf *out;       /* owned by the job */
	int ret;
	bool done;
	int refs;              /* the waiter and the store thread */
};

struct job {
	struct job *next;
	enum job_kind kind;
	struct directing_lookup *lookup;
	struct admin_job *admin;
	char user[USER_MAX];
	char backend[DIRECTOR_NAME_MAX];
	int delta;
	bool failing;
	/* JOB_RELOAD: (name weight tag) of the config */
	char (*names)[DIRECTOR_NAME_MAX];
	char (*tags)[DIRECTOR_NAME_MAX];
	uint32_t *weights;
	bool *weight_changed;
	size_t count;
};

/* A kick round: flush/down of a backend or move of a user (I4). */
struct round {
	struct round *next;
	bool move;
	char final_state[16];      /* flush "", down-admin|down-health, remove */
	char why[8];               /* flush|down|remove */
	char name[DIRECTOR_NAME_MAX];
	char user[USER_MAX];
	long long epoch;
	char live[LIVE_PROXIES_MAX][DIRECTOR_NAME_MAX];
	size_t live_count;
	size_t acked;
	unsigned int kicked;       /* our own sessions closed */
	uint64_t started_msecs;
	struct net_timer *poll;
	struct admin_job *job;     /* NULL for a health-initiated down */
	struct paced_flush *flush; /* a paced flush's batch */
	size_t batch_users;
};

/* A paced flush: batches of director_flush_batch users, each a kick round
 * of its own, director_flush_interval apart (docs/director.md). */
struct paced_flush {
	struct paced_flush *next;
	char name[DIRECTOR_NAME_MAX];
	size_t total;              /* users mapped when it began */
	size_t processed;
	long long unmapped;
	unsigned int kicked;
	unsigned int batches;
	struct net_timer *timer;
	struct admin_job *job;     /* answered after the first batch */
};

static struct {
	bool configured;
	atomic_bool started;
	pthread_t thread;
	struct event_base *base;
	struct redis_client *rc;
	struct director *dir;        /* directing.c's */
	pthread_mutex_t *dir_lock;

	char prefix[128];
	char name[DIRECTOR_NAME_MAX];
	char channel[160];
	uint64_t user_expire_msecs;
	uint64_t heartbeat_msecs;
	uint64_t dead_msecs;
	uint64_t move_timeout_msecs;
	uint64_t redis_timeout_msecs;

	/* the queue from other threads */
	pthread_mutex_t qlock;
	pthread_cond_t qcond;        /* admin jobs done */
	struct job *queue_head, *queue_tail;
	struct event *wake_ev;
	bool stopping;

	/* store-thread state */
	struct net_timer *heartbeat;
	struct net_timer *refresh;
	struct net_timer *reconcile_timer;
	struct round *rounds;
	struct paced_flush *flushes;
	struct directing_lookup *pending; /* lookups the store works on */
	size_t flush_batch;
	uint64_t flush_interval_msecs;
	unsigned int kick_seq;
	bool reconciling;
	char live[LIVE_PROXIES_MAX][DIRECTOR_NAME_MAX];
	size_t live_count;
	uint64_t connected_since;

	atomic_bool degraded;
	atomic_bool authoritative;
	_Atomic(directing_answer_fn *) answer_hook;
	uint64_t admin_token;        /* main thread */
	char master[300];            /* under qlock */
	char last_error[256];        /* under qlock */
	atomic_ullong lookups, lookup_failures, store_latency_usecs_sum, store_calls;
} dr;

static uint64_t now_msecs(void)
{
	return net_monotonic_msecs();
}

static uint64_t now_usecs(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void json_cstr(struct buf *out, const char *s)
{
	json_append_str(out, str_from(s, strlen(s)));
}

static int json_error(struct buf *out, const char *msg)
{
	buf_reset(out);
	buf_append_cstr(out, "{\"error\":");
	json_cstr(out, msg);
	buf_append_cstr(out, "}");
	return -1;
}

static void u64_str(uint64_t v, char *dst, size_t size)
{
	str_printf(dst, size, "%llu", (unsigned long long)v);
}

/* An EVAL: script, then P and the caller's arguments. */
static void eval(const char *script, redis_reply_fn *cb, void *ctx, int argc,
		 const char *const *argv)
{
	const char *args[REDIS_ARGS_MAX];
	int n = 0;

	if (argc + 4 > REDIS_ARGS_MAX || dr.rc == NULL) {
		cb(NULL, ctx);
		return;
	}
	args[n++] = "EVAL";
	args[n++] = script;
	args[n++] = "0";
	args[n++] = dr.prefix;
	for (int i = 0; i < argc; i++)
		args[n++] = argv[i];
	redis_client_commandv(dr.rc, cb, ctx, n, args);
}

static void ignore_reply(const struct redisReply *reply, void *ctx)
{
	const char *what = ctx;
	const char *err = redis_reply_error(reply);
	if (err != NULL)
		log_warnx("director: redis %s failed: %s", what, err);
}

static bool reply_is_array(const struct redisReply *r, size_t min)
{
	return r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements >= min;
}

static const char *reply_str(const struct redisReply *r)
{
	if (r != NULL && (r->type == REDIS_REPLY_STRING ||
			  r->type == REDIS_REPLY_STATUS))
		return r->str;
	return "";
}

static long long reply_int(const struct redisReply *r)
{
	if (r == NULL)
		return 0;
	if (r->type == REDIS_REPLY_INTEGER)
		return r->integer;
	if (r->type == REDIS_REPLY_STRING) {
		long long v = 0;
		for (size_t i = 0; i < r->len && r->str[i] >= '0' && r->str[i] <= '9'; i++)
			v = v * 10 + (r->str[i] - '0');
		return v;
	}
	return 0;
}

/* ---- the backend table ----------------------------------------------------- */

/* Makes the cache's backends follow the ring's table (reply of lua_load).
 * Backends the ring has but our config lacks cannot be routed to (no
 * address) and are ignored; ours the ring lacks are seeded again. */
static bool ring_has(const struct redisReply *r, const char *name)
{
	for (size_t i = 0; i < r->elements; i++) {
		const struct redisReply *b = r->element[i];
		if (reply_is_array(b, 8) && strcmp(reply_str(b->element[0]), name) == 0)
			return true;
	}
	return false;
}

static void apply_backends(const struct redisReply *r)
{
	bool changed = false;
	char went_down[64][DIRECTOR_NAME_MAX];
	size_t went_down_count = 0;

	pthread_mutex_lock(dr.dir_lock);
	/* run-time backends another proxy removed */
	for (size_t i = director_backend_count(dr.dir); i-- > 0;) {
		struct director_backend_info info;
		director_backend_get(dr.dir, i, &info);
		if (info.host[0] != '\0' && !ring_has(r, info.name)) {
			director_backend_remove(dr.dir, info.name);
			changed = true;
		}
	}
	for (size_t i = 0; i < r->elements; i++) {
		const struct redisReply *b = r->element[i];
		struct director_backend_info info;
		if (!reply_is_array(b, 8))
			continue;
		const char *name = reply_str(b->element[0]);
		const char *host = reply_str(b->element[7]);
		if (!director_backend_find(dr.dir, name, &info)) {
			/* added at run time through another proxy */
			if (host[0] == '\0' ||
			    director_backend_add(dr.dir, name,
						 (uint32_t)reply_int(b->element[1]),
						 reply_str(b->element[2])) < 0)
				continue;
			director_backend_set_host(dr.dir, name, host);
			changed = true;
			director_backend_find(dr.dir, name, &info);
		}
		uint32_t weight = (uint32_t)reply_int(b->element[1]);
		bool up = strcmp(reply_str(b->element[3]), "up") == 0;
		if (info.weight != weight)
			director_backend_set_weight(dr.dir, name, weight);
		if ((info.state == DIRECTOR_BACKEND_UP) != up) {
			director_backend_set_state(dr.dir, name, up ? DIRECTOR_BACKEND_UP :
							     DIRECTOR_BACKEND_DOWN);
			if (!up && went_down_count < 64)
				str_copy(str_cstr(name), went_down[went_down_count++],
					 DIRECTOR_NAME_MAX);
		}
	}
	pthread_mutex_unlock(dr.dir_lock);
	/* sessions left on a backend the ring took down while we could not
	 * hear its kick (I4 after an outage) */
	for (size_t i = 0; i < went_down_count; i++) {
		unsigned int kicked = proxy_kick(NULL, went_down[i], "Backend is down.",
						 true);
		if (kicked > 0)
			log_warnx("director: backend %s is down in the ring: closed %u "
				  "sessions left on it", went_down[i], kicked);
	}
	if (changed)
		directing_request_reconfigure("the ring's backend set changed");
}

static void on_load(const struct redisReply *reply, void *ctx)
{
	(void)ctx;
	if (reply_is_array(reply, 0))
		apply_backends(reply);
}

static void load_backends(void)
{
	eval(lua_load, on_load, NULL, 0, NULL);
}

/* A backend to seed into the ring when the ring lacks it. */
struct seed_entry {
	char name[DIRECTOR_NAME_MAX];
	char tag[DIRECTOR_NAME_MAX];
	char host[DIRECTOR_HOST_MAX];
	char weight[16];
	bool up;
};

typedef void seed_done_fn(bool ok);

struct seed_run {
	unsigned int pending;
	bool failed;
	seed_done_fn *done;
};

static void on_seed_chunk(const struct redisReply *reply, void *ctx)
{
	struct seed_run *run = ctx;
	if (reply == NULL || redis_reply_error(reply) != NULL) {
		if (reply != NULL)
			log_warnx("director: seeding the ring failed: %s", reply->str);
		run->failed = true;
	}
	if (--run->pending > 0)
		return;
	if (run->done != NULL)
		run->done(!run->failed);
	free(run);
}

/* Seeds entries (any number, SEED_CHUNK per script) where the ring lacks
 * them; done(ok) after the last answer. */
static void seed_entries(const struct seed_entry *e, size_t count,
			 seed_done_fn *done)
{
	struct seed_run *run = xcalloc(1, sizeof(*run));

	run->done = done;
	run->pending = 1; /* ours, dropped below */
	for (size_t first = 0; first < count; first += SEED_CHUNK) {
		const char *args[REDIS_ARGS_MAX];
		int n = 0;
		for (size_t i = first; i < count && i < first + SEED_CHUNK; i++) {
			args[n++] = e[i].name;
			args[n++] = e[i].weight;
			args[n++] = e[i].tag;
			args[n++] = e[i].up ? "up" : "down";
			args[n++] = e[i].host;
		}
		run->pending++;
		eval(lua_seed, on_seed_chunk, run, n, args);
	}
	struct redisReply ok = { .type = REDIS_REPLY_INTEGER };
	on_seed_chunk(&ok, run);
}

/* Seeds our backends (weight, tag, state, host) where the ring lacks them. */
static void seed_backends(seed_done_fn *done)
{
	pthread_mutex_lock(dr.dir_lock);
	size_t count = director_backend_count(dr.dir);
	struct seed_entry *e = xcalloc(count + 1, sizeof(*e));
	for (size_t i = 0; i < count; i++) {
		struct director_backend_info info;
		director_backend_get(dr.dir, i, &info);
		str_copy(str_cstr(info.name), e[i].name, sizeof(e[i].name));
		str_copy(str_cstr(info.tag), e[i].tag, sizeof(e[i].tag));
		str_copy(str_cstr(info.host), e[i].host, sizeof(e[i].host));
		u64_str(info.weight, e[i].weight, sizeof(e[i].weight));
		e[i].up = info.state == DIRECTOR_BACKEND_UP;
	}
	pthread_mutex_unlock(dr.dir_lock);
	seed_entries(e, count, done);
	free(e);
}

/* ---- heartbeats ------------------------------------------------------------- */

static void on_heartbeat(const struct redisReply *reply, void *ctx)
{
	(void)ctx;
	if (!reply_is_array(reply, 0))
		return;
	size_t n = 0;
	for (size_t i = 0; i < reply->elements && n < LIVE_PROXIES_MAX; i++)
		str_copy(str_cstr(reply_str(reply->element[i])), dr.live[n++],
			 DIRECTOR_NAME_MAX);
	dr.live_count = n;
}

static void send_heartbeat(void)
{
	char dead[24];
	u64_str(dr.dead_msecs, dead, sizeof(dead));
	const char *args[] = { dr.name, dead };
	eval(lua_heartbeat, on_heartbeat, NULL, 2, args);
}

static void heartbeat_tick(void *context)
{
	(void)context;
	if (redis_client_ready(dr.rc))
		send_heartbeat();
}

/* ---- re-assertion (refresh, reconcile) -------------------------------------- */

struct assert_batch {
	char store[ASSERT_BATCH][3][USER_MAX];
	int n;
};

/* One re-assertion: the batches go one after the other (never a burst of
 * scripts that would time out queued behind each other). */
struct assert_run {
	struct assert_batch *batches;
	size_t count;
	size_t alloc;
	size_t next;
	bool reconcile;
	bool failed;
	size_t users;
	size_t conflicts;
};

static void reconcile_retry(void *context);

static void assert_done(struct assert_run *run)
{
	if (run->reconcile && run->failed) {
		/* not reconciled: stay degraded and try again */
		log_warnx("director: reconciling with the redis store failed; "
			  "retrying");
		net_timer_start(dr.reconcile_timer, 1000, false);
	} else if (run->reconcile) {
		dr.reconciling = false;
		atomic_store(&dr.degraded, false);
		atomic_store(&dr.authoritative, true);
		log_notice("director: redis store reconciled: %zu users with "
			   "sessions re-asserted, %zu conflicts resolved",
			   run->users, run->conflicts);
	}
	free(run->batches);
	free(run);
}

static void assert_send_next(struct assert_run *run);

static void on_assert(const struct redisReply *reply, void *ctx)
{
	struct assert_run *run = ctx;

	if (reply == NULL || redis_reply_error(reply) != NULL) {
		if (reply != NULL)
			log_warnx("director: re-asserting mappings failed: %s",
				  reply->str);
		run->failed = true;
		assert_done(run);
		return;
	}
	for (size_t i = 0; reply_is_array(reply, 0) && i + 1 < reply->elements;
	     i += 2) {
		const char *user = reply_str(reply->element[i]);
		const char *ring = reply_str(reply->element[i + 1]);
		char local[DIRECTOR_NAME_MAX];
		unsigned int sessions = 0;
		bool have;
		/* the ring's mapping wins (first writer): our sessions of
		 * the user on another backend go (I1) */
		pthread_mutex_lock(dr.dir_lock);
		have = director_user_lookup(dr.dir, str_cstr(user), now_msecs(),
					    local, &sessions);
		director_forget(dr.dir, str_cstr(user));
		dr.kick_seq++;
		pthread_mutex_unlock(dr.dir_lock);
		const char *key = user;
		unsigned int kicked = have ? proxy_kick_keys(&key, 1, local,
							     "Moved to another server.") : 0;
		log_warnx("director: user %s: the ring maps it to %s, we had "
			  "%u sessions on %s: closed %u", user,
			  ring[0] != '\0' ? ring : "nothing", sessions,
			  have ? local : "?", kicked);
		run->conflicts++;
	}
	assert_send_next(run);
}

static void assert_send_next(struct assert_run *run)
{
	char ttl[24];

	if (run->next == run->count) {
		assert_done(run);
		return;
	}
	struct assert_batch *b = &run->batches[run->next++];
	const char *args[REDIS_ARGS_MAX];
	int n = 0;
	u64_str(dr.user_expire_msecs, ttl, sizeof(ttl));
	args[n++] = ttl;
	for (int k = 0; k < b->n / 3; k++) {
		args[n++] = b->store[k][0];
		args[n++] = b->store[k][1];
		args[n++] = b->store[k][2];
	}
	eval(lua_assert, on_assert, run, n, args);
}

static void collect_mapping(const char *user, const char *backend,
			    unsigned int sessions, void *context)
{
	struct assert_run *run = context;
	struct assert_batch *b;

	if (sessions == 0 || strlen(user) >= USER_MAX)
		return;
	if (run->count == 0 || run->batches[run->count - 1].n / 3 == ASSERT_BATCH) {
		if (run->count == run->alloc) {
			run->alloc = run->alloc == 0 ? 4 : run->alloc * 2;
			run->batches = xreallocarray(run->batches, run->alloc,
						     sizeof(*run->batches));
		}
		memset(&run->batches[run->count], 0, sizeof(run->batches[0]));
		run->count++;
	}
	b = &run->batches[run->count - 1];
	size_t k = (size_t)b->n / 3;
	str_copy(str_cstr(user), b->store[k][0], USER_MAX);
	str_copy(str_cstr(backend), b->store[k][1], USER_MAX);
	str_printf(b->store[k][2], USER_MAX, "%u", sessions);
	b->n += 3;
	run->users++;
}

/* Re-asserts the mappings of our live sessions (refresh, and after a
 * reconnect: the master may be new and have lost them). */
static void assert_mappings(bool reconcile)
{
	struct assert_run *run = xcalloc(1, sizeof(*run));

	run->reconcile = reconcile;
	pthread_mutex_lock(dr.dir_lock);
	director_each_mapping(dr.dir, now_msecs(), collect_mapping, run);
	pthread_mutex_unlock(dr.dir_lock);
	assert_send_next(run);
}

static void refresh_tick(void *context)
{
	(void)context;
	if (redis_client_ready(dr.rc) && !dr.reconciling)
		assert_mappings(false);
}

/* ---- connection state -------------------------------------------------------- */

static void on_reconcile_load(const struct redisReply *reply, void *ctx)
{
	(void)ctx;
	if (!reply_is_array(reply, 0)) {
		net_timer_start(dr.reconcile_timer, 1000, false);
		return;
	}
	/* the ring's backend states first: re-asserting from a stale view
	 * would keep sessions on a backend that went down meanwhile */
	apply_backends(reply);
	send_heartbeat();
	assert_mappings(true);
}

static void on_seeded(bool ok)
{
	if (!ok) {
		if (redis_client_ready(dr.rc))
			net_timer_start(dr.reconcile_timer, 1000, false);
		return; /* else the next connect redoes it */
	}
	eval(lua_load, on_reconcile_load, NULL, 0, NULL);
}

static void reconcile_retry(void *context)
{
	(void)context;
	if (redis_client_ready(dr.rc) && dr.reconciling)
		seed_backends(on_seeded);
}

static void on_connected(void *ctx, const char *master)
{
	(void)ctx;
	pthread_mutex_lock(&dr.qlock);
	str_copy(str_cstr(master), dr.master, sizeof(dr.master));
	pthread_mutex_unlock(&dr.qlock);
	dr.connected_since = now_msecs();
	dr.reconciling = true;
	if (atomic_load(&dr.degraded))
		log_notice("director: redis store %s reachable again: reconciling",
			   master);
	else
		log_notice("director: redis store %s connected", master);
	seed_backends(on_seeded);
}

static void on_disconnected(void *ctx, const char *why)
{
	size_t backends;
	(void)ctx;
	pthread_mutex_lock(&dr.qlock);
	str_copy(str_cstr(why), dr.last_error, sizeof(dr.last_error));
	dr.master[0] = '\0';
	pthread_mutex_unlock(&dr.qlock);
	atomic_store(&dr.authoritative, false);
	dr.reconciling = false;
	if (atomic_exchange(&dr.degraded, true))
		return; /* logged once per outage */
	pthread_mutex_lock(dr.dir_lock);
	backends = director_backend_count(dr.dir);
	pthread_mutex_unlock(dr.dir_lock);
	log_warnx("director: degraded: %s; serving from cached mappings and "
		  "placement over %zu known backends", why, backends);
}

/* ---- kick rounds (I4) ------------------------------------------------------- */

static struct round *round_find(long long epoch)
{
	for (struct round *r = dr.rounds; r != NULL; r = r->next) {
		if (r->epoch == epoch)
			return r;
	}
	return NULL;
}

static void send_ack(const char *epoch)
{
	const char *args[] = { epoch, dr.name };
	eval(lua_ack, ignore_reply, (void *)(uintptr_t)"ack", 2, args);
}

static void admin_job_finish(struct admin_job *job, int ret);

static void round_free(struct round *r)
{
	struct round **pp = &dr.rounds;
	while (*pp != NULL && *pp != r)
		pp = &(*pp)->next;
	if (*pp == r)
		*pp = r->next;
	net_timer_free(&r->poll);
	free(r);
}

static void round_answer(struct round *r, int ret, const char *error,
			 long long unmapped)
{
	struct admin_job *job = r->job;

	if (job == NULL)
		return;
	r->job = NULL;
	if (ret < 0) {
		json_error(job->out, error);
		admin_job_finish(job, -1);
		return;
	}
	if (r->move) {
		buf_append_cstr(job->out, "{\"user\":");
		json_cstr(job->out, r->user);
		buf_append_cstr(job->out, ",\"backend\":");
		json_cstr(job->out, r->name);
	} else {
		buf_append_cstr(job->out, "{\"backend\":");
		json_cstr(job->out, r->name);
		if (strcmp(r->why, "down") == 0)
			buf_append_cstr(job->out, ",\"state\":\"down\"");
		else if (strcmp(r->why, "remove") == 0)
			buf_append_cstr(job->out, ",\"removed\":true");
		else
			buf_printf(job->out, ",\"unmapped\":%lld", unmapped);
	}
	buf_printf(job->out, ",\"kicked\":%u,\"proxies\":%zu,\"acked\":%zu}",
		   r->kicked, r->live_count, r->acked);
	admin_job_finish(job, 0);
}

static void on_round_done(const struct redisReply *reply, void *ctx)
{
	struct round *r = ctx;
	long long v = reply_int(reply);

	if (reply == NULL || redis_reply_error(reply) != NULL) {
		log_warnx("director: %s %s: finishing the round failed: %s",
			  r->move ? "move of" : r->why, r->move ? r->user : r->name,
			  reply == NULL ? "no answer" : reply->str);
		round_answer(r, -1, "ring store unavailable", 0);
	} else if (r->move) {
		log_notice("director: user %s moved to %s (%u sessions closed here, "
			   "%zu/%zu proxies acknowledged)", r->user, r->name,
			   r->kicked, r->acked, r->live_count);
		round_answer(r, 0, NULL, 0);
	} else {
		log_notice("director: backend %s %s: %lld users unmapped, %u sessions "
			   "closed here, %zu/%zu proxies acknowledged", r->name,
			   strcmp(r->why, "down") == 0 ? "set down" :
			   strcmp(r->why, "remove") == 0 ? "removed" : "flushed",
			   v < 0 ? 0 : v, r->kicked, r->acked, r->live_count);
		round_answer(r, 0, NULL, v < 0 ? 0 : v);
	}
	round_free(r);
}

static void paced_flush_batch_done(struct round *r, const struct redisReply *reply);

static void on_batch_done(const struct redisReply *reply, void *ctx)
{
	struct round *r = ctx;
	paced_flush_batch_done(r, reply);
	round_free(r);
}

static void round_finish(struct round *r)
{
	char epoch[24];
	char ttl[24];
	str_printf(epoch, sizeof(epoch), "%lld", r->epoch);
	u64_str(dr.user_expire_msecs, ttl, sizeof(ttl));
	if (r->flush != NULL) {
		const char *args[] = { epoch };
		eval(lua_flush_batch_done, on_batch_done, r, 1, args);
		return;
	}
	if (r->move) {
		const char *args[] = { r->user, epoch, ttl };
		eval(lua_move_done, on_round_done, r, 3, args);
	} else {
		const char *args[] = { r->name, epoch };
		eval(lua_flush_done, on_round_done, r, 2, args);
	}
}

static void on_acks(const struct redisReply *reply, void *ctx)
{
	struct round *r = ctx;
	size_t acked = 0;

	if (reply == NULL) {
		if (r->flush != NULL)
			paced_flush_batch_done(r, NULL);
		round_answer(r, -1, "ring store unavailable", 0);
		round_free(r);
		return;
	}
	for (size_t i = 0; i < r->live_count; i++) {
		for (size_t k = 0; reply_is_array(reply, 0) && k < reply->elements; k++) {
			if (strcmp(reply_str(reply->element[k]), r->live[i]) == 0) {
				acked++;
				break;
			}
		}
	}
	r->acked = acked;
	if (acked >= r->live_count) {
		round_finish(r);
		return;
	}
	if (now_msecs() - r->started_msecs >= dr.move_timeout_msecs) {
		char missing[512] = "";
		size_t len = 0;
		for (size_t i = 0; i < r->live_count; i++) {
			bool found = false;
			for (size_t k = 0; reply_is_array(reply, 0) && k < reply->elements; k++)
				found |= strcmp(reply_str(reply->element[k]), r->live[i]) == 0;
			if (!found && len + strlen(r->live[i]) + 2 < sizeof(missing)) {
				len += (size_t)str_printf(missing + len, sizeof(missing) - len,
							  "%s%s", len > 0 ? "," : "",
							  r->live[i]);
			}
		}
		log_warnx("director: kick round %lld (%s %s): proxies %s did not "
			  "acknowledge within %llu ms; going on", r->epoch,
			  r->move ? "move of" : r->why, r->move ? r->user : r->name,
			  missing, (unsigned long long)dr.move_timeout_msecs);
		round_finish(r);
		return;
	}
	net_timer_start(r->poll, ACK_POLL_MSECS, false);
}

static void round_poll(void *context)
{
	struct round *r = context;
	char key[200];
	str_printf(key, sizeof(key), "%sack:%lld", dr.prefix, r->epoch);
	const char *args[] = { "SMEMBERS", key };
	redis_client_commandv(dr.rc, on_acks, r, 2, args);
}

static void on_round_marked(const struct redisReply *reply, void *ctx)
{
	struct round *r = ctx;

	if (!reply_is_array(reply, 1)) {
		round_answer(r, -1, redis_reply_error(reply) != NULL ? reply->str :
				    "ring store unavailable", 0);
		round_free(r);
		return;
	}
	long long e = reply_int(reply->element[0]);
	if (e < 0) {
		round_answer(r, -1, "unknown backend", 0);
		round_free(r);
		return;
	}
	if (e == 0) {
		round_answer(r, -1, "a flush of this backend is already under way", 0);
		round_free(r);
		return;
	}
	r->epoch = e;
	r->started_msecs = now_msecs();
	if (reply->elements >= 2 && reply_is_array(reply->element[1], 0)) {
		const struct redisReply *l = reply->element[1];
		for (size_t i = 0; i < l->elements && r->live_count < LIVE_PROXIES_MAX; i++)
			str_copy(str_cstr(reply_str(l->element[i])),
				 r->live[r->live_count++], DIRECTOR_NAME_MAX);
	}
	net_timer_start(r->poll, 0, false);
}

static struct round *round_new(bool move, const char *name, const char *user,
			       struct admin_job *job)
{
	struct round *r = xcalloc(1, sizeof(*r));
	r->move = move;
	str_copy(str_cstr(name), r->name, sizeof(r->name));
	if (user != NULL)
		str_copy(str_cstr(user), r->user, sizeof(r->user));
	r->job = job;
	r->poll = net_timer_new(dr.base, round_poll, r);
	r->next = dr.rounds;
	dr.rounds = r;
	return r;
}

static void start_backend_round(const char *name, const char *final_state,
				const char *why, struct admin_job *job)
{
	struct round *r = round_new(false, name, NULL, job);
	char dead[24];
	str_copy(str_cstr(final_state), r->final_state, sizeof(r->final_state));
	str_copy(str_cstr(why), r->why, sizeof(r->why));
	u64_str(dr.dead_msecs, dead, sizeof(dead));
	const char *args[] = { name, final_state, dead, why };
	eval(lua_flush_mark, on_round_marked, r, 4, args);
}

static void start_move_round(const char *user, const char *target,
			     struct admin_job *job)
{
	struct round *r = round_new(true, target, user, job);
	char dead[24], ttl[24];
	u64_str(dr.dead_msecs, dead, sizeof(dead));
	u64_str(dr.user_expire_msecs + dr.move_timeout_msecs * 2, ttl, sizeof(ttl));
	const char *args[] = { user, target, ttl, dead };
	eval(lua_move_mark, on_round_marked, r, 4, args);
}

static void paced_flush_free(struct paced_flush *pf)
{
	struct paced_flush **pp = &dr.flushes;
	while (*pp != NULL && *pp != pf)
		pp = &(*pp)->next;
	if (*pp == pf)
		*pp = pf->next;
	net_timer_free(&pf->timer);
	free(pf);
}

static void paced_flush_answer(struct paced_flush *pf, int ret, const char *error)
{
	struct admin_job *job = pf->job;
	if (job == NULL)
		return;
	pf->job = NULL;
	if (ret < 0) {
		json_error(job->out, error);
		admin_job_finish(job, -1);
		return;
	}
	buf_append_cstr(job->out, "{\"backend\":");
	json_cstr(job->out, pf->name);
	buf_printf(job->out, ",\"users\":%zu,\"batch\":%zu,\"paced\":true,"
		   "\"unmapped\":%lld,\"kicked\":%u}", pf->total, dr.flush_batch,
		   pf->unmapped, pf->kicked);
	admin_job_finish(job, 0);
}

static void paced_flush_end(struct paced_flush *pf, const char *error)
{
	if (error != NULL) {
		log_warnx("director: flush of backend %s stopped after %zu of %zu "
			  "users: %s", pf->name, pf->processed, pf->total, error);
		paced_flush_answer(pf, -1, error);
	} else {
		log_notice("director: backend %s flushed: %lld users unmapped, %u "
			   "sessions closed here (%u batches)", pf->name, pf->unmapped,
			   pf->kicked, pf->batches);
		paced_flush_answer(pf, 0, NULL);
	}
	paced_flush_free(pf);
}

static void on_batch_marked(const struct redisReply *reply, void *ctx);

static void paced_flush_next(void *context)
{
	struct paced_flush *pf = context;
	char count[24], dead[24];
	u64_str(dr.flush_batch, count, sizeof(count));
	u64_str(dr.dead_msecs, dead, sizeof(dead));
	const char *args[] = { pf->name, count, dead };
	eval(lua_flush_batch_mark, on_batch_marked, pf, 3, args);
}

static void on_batch_marked(const struct redisReply *reply, void *ctx)
{
	struct paced_flush *pf = ctx;

	if (!reply_is_array(reply, 1)) {
		paced_flush_end(pf, "ring store unavailable");
		return;
	}
	long long e = reply_int(reply->element[0]);
	if (e < 0) {
		paced_flush_end(pf, "unknown backend");
		return;
	}
	if (e == 0) {
		paced_flush_end(pf, NULL); /* nobody left */
		return;
	}
	struct round *r = round_new(false, pf->name, NULL, NULL);
	str_copy(STR("flush"), r->why, sizeof(r->why));
	r->flush = pf;
	r->epoch = e;
	r->started_msecs = now_msecs();
	if (reply->elements >= 2 && reply_is_array(reply->element[1], 0)) {
		const struct redisReply *l = reply->element[1];
		for (size_t i = 0; i < l->elements && r->live_count < LIVE_PROXIES_MAX; i++)
			str_copy(str_cstr(reply_str(l->element[i])),
				 r->live[r->live_count++], DIRECTOR_NAME_MAX);
	}
	if (reply->elements >= 3 && reply_is_array(reply->element[2], 0))
		r->batch_users = reply->element[2]->elements;
	net_timer_start(r->poll, 0, false);
}

/* A batch's round is over (reply: users unmapped, or NULL on failure). */
static void paced_flush_batch_done(struct round *r, const struct redisReply *reply)
{
	struct paced_flush *pf = r->flush;

	r->flush = NULL;
	if (reply == NULL || redis_reply_error(reply) != NULL) {
		paced_flush_end(pf, "ring store unavailable");
		return;
	}
	pf->batches++;
	pf->processed += r->batch_users;
	pf->unmapped += reply_int(reply);
	pf->kicked += r->kicked;
	paced_flush_answer(pf, 0, NULL);
	if (pf->processed >= pf->total) {
		/* users mapped there since the flush began stay: a flush is
		 * not a drain */
		paced_flush_end(pf, NULL);
		return;
	}
	net_timer_start(pf->timer, (unsigned int)dr.flush_interval_msecs, false);
}

static void on_flush_size(const struct redisReply *reply, void *ctx)
{
	struct admin_job *job = ctx;

	if (!reply_is_array(reply, 2)) {
		json_error(job->out, "ring store unavailable");
		admin_job_finish(job, -1);
		return;
	}
	if (reply_int(reply->element[0]) == 0) {
		json_error(job->out, "unknown backend");
		admin_job_finish(job, -1);
		return;
	}
	long long users = reply_int(reply->element[1]);
	for (struct paced_flush *pf = dr.flushes; pf != NULL; pf = pf->next) {
		if (strcmp(pf->name, job->backend) == 0) {
			json_error(job->out, "a flush of this backend is already under way");
			admin_job_finish(job, -1);
			return;
		}
	}
	if (dr.flush_batch == 0 || users <= (long long)dr.flush_batch) {
		/* one round for the whole backend: its generation is bumped */
		start_backend_round(job->backend, "", "flush", job);
		return;
	}
	struct paced_flush *pf = xcalloc(1, sizeof(*pf));
	str_copy(str_cstr(job->backend), pf->name, sizeof(pf->name));
	pf->total = (size_t)users;
	pf->job = job;
	pf->timer = net_timer_new(dr.base, paced_flush_next, pf);
	pf->next = dr.flushes;
	dr.flushes = pf;
	log_notice("director: backend %s: flushing %zu users, %zu at a time",
		   pf->name, pf->total, dr.flush_batch);
	paced_flush_next(pf);
}

/* ---- events ------------------------------------------------------------------ */

/* Splits the next space-separated word off *s. */
static struct str next_word(struct str *s)
{
	struct str word, rest;
	if (!str_split(*s, ' ', &word, &rest)) {
		word = *s;
		rest = STR_NULL;
	}
	*s = rest;
	return word;
}

/* "BACKEND USER [BACKEND USER...]" from map/alive events into the cache.
 * A user this proxy holds sessions of on another backend is a conflict:
 * the ring wins (as at reconcile). */
static void learn_mappings(struct str msg)
{
	while (msg.len > 0) {
		char backend[DIRECTOR_NAME_MAX], user[USER_MAX];
		struct str b = next_word(&msg);
		struct str u = next_word(&msg);
		if (b.len == 0 || u.len == 0 || !str_copy(b, backend, sizeof(backend)) ||
		    !str_copy(u, user, sizeof(user)))
			continue;
		unsigned int displaced = 0;
		char old[DIRECTOR_NAME_MAX];
		unsigned int sessions = 0;
		pthread_mutex_lock(dr.dir_lock);
		bool had = director_user_lookup(dr.dir, str_cstr(user), now_msecs(),
						old, &sessions);
		director_cache_set(dr.dir, str_cstr(user), backend, now_msecs(),
				   &displaced);
		pthread_mutex_unlock(dr.dir_lock);
		if (displaced > 0 && had) {
			const char *key = user;
			unsigned int kicked = proxy_kick_keys(&key, 1, old,
							      "Moved to another server.");
			log_warnx("director: user %s: the ring maps it to %s, we had "
				  "%u sessions on %s: closed %u", user, backend,
				  displaced, old, kicked);
		}
	}
}

static void on_message(void *ctx, const char *data, size_t len)
{
	struct str msg = str_from(data, len);
	struct str kind = next_word(&msg);
	char epoch[24], name[USER_MAX];
	(void)ctx;

	if (str_eq(kind, STR("backends"))) {
		load_backends();
		return;
	}
	if (str_eq(kind, STR("map")) || str_eq(kind, STR("alive"))) {
		/* every proxy keeps every live mapping it hears of, so that
		 * when the ring is unreachable it still routes a user to where
		 * another proxy holds the user's sessions (I1 while degraded) */
		learn_mappings(msg);
		return;
	}
	if (str_eq(kind, STR("kick"))) {
		struct str user = next_word(&msg);
		str_copy(user, name, sizeof(name));
		if (!str_eq(msg, str_cstr(dr.name)))
			proxy_kick(name, NULL, "Disconnected by administrator.", false);
		return;
	}
	struct str e = next_word(&msg);
	str_copy(e, epoch, sizeof(epoch));
	if (str_eq(kind, STR("kick-user"))) {
		str_copy(msg, name, sizeof(name));
		/* the cache forgets first, so a login that reaches
		 * session_begin after this cannot stay (I1) */
		pthread_mutex_lock(dr.dir_lock);
		director_forget(dr.dir, str_cstr(name));
		dr.kick_seq++;
		pthread_mutex_unlock(dr.dir_lock);
		unsigned int kicked = proxy_kick(name, NULL, "Moved to another server.",
						 false);
		struct round *r = round_find(atoll(epoch));
		if (r != NULL)
			r->kicked = kicked;
		send_ack(epoch);
	} else if (str_eq(kind, STR("kick-users"))) {
		/* a paced flush's batch: "kick-users E BACKEND u1 u2 ..." */
		struct str backend = next_word(&msg);
		char bname[DIRECTOR_NAME_MAX];
		size_t n = 0, alloc = 16;
		char **keys = xcalloc(alloc, sizeof(*keys));
		str_copy(backend, bname, sizeof(bname));
		while (msg.len > 0) {
			struct str u = next_word(&msg);
			if (u.len == 0)
				continue;
			if (n == alloc) {
				alloc *= 2;
				keys = xreallocarray(keys, alloc, sizeof(*keys));
			}
			keys[n++] = xstrndup(u.p, u.len);
		}
		pthread_mutex_lock(dr.dir_lock);
		for (size_t i = 0; i < n; i++) {
			char mapped[DIRECTOR_NAME_MAX];
			unsigned int sessions;
			if (director_user_lookup(dr.dir, str_cstr(keys[i]), now_msecs(),
						 mapped, &sessions) &&
			    strcmp(mapped, bname) == 0)
				director_forget(dr.dir, str_cstr(keys[i]));
		}
		dr.kick_seq++;
		pthread_mutex_unlock(dr.dir_lock);
		unsigned int kicked = proxy_kick_keys((const char *const *)keys, n,
						      bname, "Backend was flushed.");
		for (size_t i = 0; i < n; i++)
			free(keys[i]);
		free(keys);
		struct round *r = round_find(atoll(epoch));
		if (r != NULL)
			r->kicked = kicked;
		send_ack(epoch);
	} else if (str_eq(kind, STR("kick-backend"))) {
		struct str backend = next_word(&msg);
		bool down = str_eq(msg, STR("down"));
		str_copy(backend, name, sizeof(name));
		pthread_mutex_lock(dr.dir_lock);
		director_flush(dr.dir, name);
		dr.kick_seq++;
		pthread_mutex_unlock(dr.dir_lock);
		unsigned int kicked = proxy_kick(NULL, name, down ? "Backend is down." :
							       "Backend was flushed.",
						 true);
		struct round *r = round_find(atoll(epoch));
		if (r != NULL)
			r->kicked = kicked;
		send_ack(epoch);
	}
}

/* ---- lookups ------------------------------------------------------------------ */

static void lookup_free(struct directing_lookup *l)
{
	net_timer_free(&l->retry);
	free(l->user);
	free(l->tag);
	free(l);
}

static void lookup_deliver(evutil_socket_t fd, short what, void *context)
{
	struct directing_lookup *l = context;
	(void)fd;
	(void)what;
	if (l->cb != NULL)
		l->cb(l->result, l->ctx);
	lookup_free(l);
}

/* Hands l back to its worker (or frees it when cancelled). */
static void lookup_complete(struct directing_lookup *l,
			    enum directing_lookup_result result)
{
	int expect = LOOKUP_PENDING;

	for (struct directing_lookup **pp = &dr.pending; *pp != NULL;
	     pp = &(*pp)->pnext) {
		if (*pp == l) {
			*pp = l->pnext;
			break;
		}
	}

	net_timer_free(&l->retry);
	l->result = result;
	atomic_fetch_add(&dr.lookups, 1);
	if (result == DIRECTING_LOOKUP_NONE || result == DIRECTING_LOOKUP_BUSY)
		atomic_fetch_add(&dr.lookup_failures, 1);
	if (!atomic_compare_exchange_strong(&l->state, &expect, LOOKUP_ANSWERED)) {
		lookup_free(l);
		return;
	}
	struct timeval now = { 0, 0 };
	if (event_base_once(l->base, -1, EV_TIMEOUT, lookup_deliver, l, &now) < 0) {
		/* the worker's loop is gone (shutdown): nobody waits */
		lookup_free(l);
	}
}

static void lookup_send(struct directing_lookup *l);

static void lookup_retry(void *context)
{
	lookup_send(context);
}

static void on_route(const struct redisReply *reply, void *ctx)
{
	struct directing_lookup *l = ctx;
	uint64_t elapsed = now_msecs() - l->started_msecs;

	atomic_fetch_add(&dr.store_latency_usecs_sum, now_usecs() - l->sent_usecs);
	atomic_fetch_add(&dr.store_calls, 1);

	if (atomic_load(&l->state) == LOOKUP_CANCELLED) {
		lookup_complete(l, DIRECTING_LOOKUP_BUSY);
		return;
	}
	if (reply == NULL || !reply_is_array(reply, 2)) {
		/* Redis failed this login: degrade, never fail it (I5) */
		if (reply != NULL)
			log_warnx("director: redis lookup failed: %s",
				  redis_reply_error(reply) != NULL ? reply->str :
								    "bad reply");
		lookup_complete(l, DIRECTING_LOOKUP_DEGRADED);
		return;
	}
	const char *status = reply_str(reply->element[0]);
	const char *backend = reply_str(reply->element[1]);
	if (strcmp(status, "busy") == 0) {
		if (elapsed >= dr.move_timeout_msecs) {
			lookup_complete(l, DIRECTING_LOOKUP_BUSY);
			return;
		}
		net_timer_start(l->retry, LOOKUP_RETRY_MSECS, false);
		return;
	}
	if (strcmp(status, "none") == 0) {
		lookup_complete(l, DIRECTING_LOOKUP_NONE);
		return;
	}
	if (l->kick_seq != dr.kick_seq && l->kick_retries < LOOKUP_KICK_RETRIES) {
		/* a kick was handled while the answer travelled: it may be
		 * older than the kick, ask again */
		l->kick_retries++;
		lookup_send(l);
		return;
	}
	unsigned int displaced = 0;
	char old[DIRECTOR_NAME_MAX];
	unsigned int old_sessions = 0;
	pthread_mutex_lock(dr.dir_lock);
	bool had = director_user_lookup(dr.dir, str_cstr(l->user), now_msecs(), old,
					&old_sessions);
	int ret = director_cache_set(dr.dir, str_cstr(l->user), backend, now_msecs(),
				     &displaced);
	pthread_mutex_unlock(dr.dir_lock);
	if (ret < 0) {
		/* the ring maps the user to a backend our config lacks */
		log_warnx("director: the ring maps %s to %s, which is not in our "
			  "config", l->user, backend);
		lookup_complete(l, DIRECTING_LOOKUP_NONE);
		return;
	}
	if (displaced > 0 && had) {
		unsigned int kicked = proxy_kick(l->user, old, "Moved to another server.",
						 false);
		log_warnx("director: user %s: the ring maps it to %s, we had %u "
			  "sessions on %s: closed %u", l->user, backend, displaced,
			  old, kicked);
	}
	lookup_complete(l, DIRECTING_LOOKUP_OK);
}

static void lookup_send(struct directing_lookup *l)
{
	char names[9][DIRECTOR_NAME_MAX];
	size_t nfb = 0;
	const char *args[16];
	char ttl[24], stale[24];
	int n = 0;

	if (atomic_load(&l->state) == LOOKUP_CANCELLED) {
		lookup_complete(l, DIRECTING_LOOKUP_BUSY);
		return;
	}
	if (!redis_client_ready(dr.rc) || dr.reconciling) {
		lookup_complete(l, DIRECTING_LOOKUP_DEGRADED); /* the cache */
		return;
	}
	pthread_mutex_lock(dr.dir_lock);
	enum director_route r = director_place(dr.dir, str_cstr(l->user), l->tag,
					       names[0], names + 1, 8, &nfb);
	pthread_mutex_unlock(dr.dir_lock);
	u64_str(dr.user_expire_msecs, ttl, sizeof(ttl));
	u64_str(dr.move_timeout_msecs * 2, stale, sizeof(stale));
	args[n++] = l->user;
	args[n++] = ttl;
	args[n++] = stale;
	if (r != DIRECTOR_ROUTE_NONE) {
		for (size_t i = 0; i <= nfb; i++)
			args[n++] = names[i];
	}
	l->kick_seq = dr.kick_seq;
	l->sent_usecs = now_usecs();
	eval(lua_route, on_route, l, n, args);
}

/* ---- the queue ------------------------------------------------------------------ */

static void post(struct job *job)
{
	pthread_mutex_lock(&dr.qlock);
	if (dr.stopping) {
		pthread_mutex_unlock(&dr.qlock);
		/* nobody will run it: answer what waits */
		if (job->kind == JOB_LOOKUP) {
			job->lookup->result = DIRECTING_LOOKUP_DEGRADED;
			int expect = LOOKUP_PENDING;
			if (atomic_compare_exchange_strong(&job->lookup->state, &expect,
							   LOOKUP_ANSWERED)) {
				struct timeval now = { 0, 0 };
				if (event_base_once(job->lookup->base, -1, EV_TIMEOUT,
						    lookup_deliver, job->lookup, &now) < 0)
					lookup_free(job->lookup);
			} else {
				lookup_free(job->lookup);
			}
		} else if (job->kind == JOB_ADMIN) {
			json_error(job->admin->out, "the proxy is stopping");
			admin_job_finish(job->admin, -1);
		}
		free(job);
		return;
	}
	job->next = NULL;
	if (dr.queue_tail != NULL)
		dr.queue_tail->next = job;
	else
		dr.queue_head = job;
	dr.queue_tail = job;
	pthread_mutex_unlock(&dr.qlock);
	event_active(dr.wake_ev, EV_READ, 0);
}

static void run_admin(struct admin_job *job);

static void run_reload(struct job *job)
{
	if (!redis_client_ready(dr.rc))
		return; /* seeded at the next connect */
	struct seed_entry *e = xcalloc(job->count + 1, sizeof(*e));
	for (size_t i = 0; i < job->count; i++) {
		str_copy(str_cstr(job->names[i]), e[i].name, sizeof(e[i].name));
		str_copy(str_cstr(job->tags[i]), e[i].tag, sizeof(e[i].tag));
		u64_str(job->weights[i], e[i].weight, sizeof(e[i].weight));
		e[i].up = true;
	}
	seed_entries(e, job->count, NULL);
	for (size_t i = 0; i < job->count; i++) {
		if (!job->weight_changed[i])
			continue;
		const char *wargs[] = { e[i].name, e[i].weight };
		eval(lua_set_weight, ignore_reply, (void *)(uintptr_t)"weight", 2, wargs);
	}
	free(e);
}

struct session_check {
	char user[USER_MAX];
	char backend[DIRECTOR_NAME_MAX];
};

/* A session started on a backend the ring disagrees with (it was routed
 * while this proxy was degraded, and another proxy mapped the user
 * meanwhile): the ring wins, as at reconcile, and this session goes. */
static void on_session(const struct redisReply *reply, void *ctx)
{
	struct session_check *sc = ctx;
	const char *err = redis_reply_error(reply);

	if (err != NULL)
		log_warnx("director: redis session count failed: %s", err);
	if (reply != NULL && reply->type == REDIS_REPLY_STRING &&
	    strncmp(reply->str, "elsewhere ", 10) == 0) {
		const char *ring = reply->str + 10;
		unsigned int displaced = 0;
		pthread_mutex_lock(dr.dir_lock);
		director_cache_set(dr.dir, str_cstr(sc->user), ring, now_msecs(),
				   &displaced);
		pthread_mutex_unlock(dr.dir_lock);
		const char *key = sc->user;
		unsigned int kicked = proxy_kick_keys(&key, 1, sc->backend,
						      "Moved to another server.");
		log_warnx("director: user %s: a session started on %s while the "
			  "ring maps it to %s: closed %u", sc->user, sc->backend,
			  ring, kicked);
	}
	free(sc);
}

static void on_vote(const struct redisReply *reply, void *ctx)
{
	char *name = ctx;
	if (reply_is_array(reply, 3)) {
		const char *action = reply_str(reply->element[0]);
		long long votes = reply_int(reply->element[1]);
		long long live = reply_int(reply->element[2]);
		if (strcmp(action, "down") == 0) {
			log_warnx("health: backend %s: %lld of %lld live proxies see it "
				  "failing: taking it down", name, votes, live);
			start_backend_round(name, "down-health", "down", NULL);
		} else if (strcmp(action, "up") == 0) {
			log_notice("health: backend %s: %lld of %lld live proxies see it "
				   "working: up again", name, votes, live);
		}
	}
	free(name);
}

static void run_job(struct job *job)
{
	switch (job->kind) {
	case JOB_LOOKUP:
		job->lookup->pnext = dr.pending;
		dr.pending = job->lookup;
		job->lookup->started_msecs = now_msecs();
		job->lookup->retry = net_timer_new(dr.base, lookup_retry, job->lookup);
		lookup_send(job->lookup);
		break;
	case JOB_SESSION: {
		char delta[8], ttl[24];
		if (!redis_client_ready(dr.rc))
			break;
		str_printf(delta, sizeof(delta), "%d", job->delta);
		u64_str(dr.user_expire_msecs, ttl, sizeof(ttl));
		const char *args[] = { job->user, job->backend, delta, ttl };
		struct session_check *sc = xcalloc(1, sizeof(*sc));
		str_copy(str_cstr(job->user), sc->user, sizeof(sc->user));
		str_copy(str_cstr(job->backend), sc->backend, sizeof(sc->backend));
		eval(lua_session, on_session, sc, 4, args);
		break;
	}
	case JOB_VOTE: {
		char dead[24];
		if (!redis_client_ready(dr.rc))
			break;
		u64_str(dr.dead_msecs, dead, sizeof(dead));
		const char *args[] = { job->backend, dr.name, job->failing ? "1" : "0",
				       dead };
		eval(lua_health, on_vote, xstrdup(job->backend), 4, args);
		break;
	}
	case JOB_RELOAD:
		run_reload(job);
		break;
	case JOB_ADMIN:
		run_admin(job->admin);
		break;
	}
	free(job->names);
	free(job->tags);
	free(job->weights);
	free(job->weight_changed);
	free(job);
}

static void on_wake(evutil_socket_t fd, short what, void *context)
{
	(void)fd;
	(void)what;
	(void)context;
	for (;;) {
		pthread_mutex_lock(&dr.qlock);
		struct job *job = dr.queue_head;
		if (job != NULL) {
			dr.queue_head = job->next;
			if (dr.queue_head == NULL)
				dr.queue_tail = NULL;
		}
		bool stopping = dr.stopping;
		pthread_mutex_unlock(&dr.qlock);
		if (job == NULL)
			break;
		run_job(job);
		(void)stopping;
	}
	pthread_mutex_lock(&dr.qlock);
	bool stop = dr.stopping;
	pthread_mutex_unlock(&dr.qlock);
	if (stop)
		event_base_loopexit(dr.base, NULL);
}

static void *store_thread(void *context)
{
	(void)context;
	redis_client_start(dr.rc);
	net_timer_start(dr.heartbeat, (unsigned int)dr.heartbeat_msecs, true);
	net_timer_start(dr.refresh, (unsigned int)(dr.user_expire_msecs / 3 > 1000 ?
						   dr.user_expire_msecs / 3 : 1000),
			true);
	event_base_dispatch(dr.base);
	return NULL;
}

/* ---- admin jobs ------------------------------------------------------------------ */

static void admin_job_unref(struct admin_job *job)
{
	/* under qlock */
	if (--job->refs == 0) {
		buf_free(&job->out);
		free(job);
	}
}

static void admin_job_finish(struct admin_job *job, int ret)
{
	if (job->async) {
		directing_answer_fn *hook = atomic_load(&dr.answer_hook);
		if (hook != NULL)
			hook(job->token, ret, job->out);
		buf_free(&job->out);
		free(job);
		return;
	}
	pthread_mutex_lock(&dr.qlock);
	job->ret = ret;
	job->done = true;
	pthread_cond_broadcast(&dr.qcond);
	admin_job_unref(job);
	pthread_mutex_unlock(&dr.qlock);
}

struct status_ctx {
	struct admin_job *job;
};

static void on_status_load(const struct redisReply *reply, void *ctx)
{
	struct admin_job *job = ctx;
	struct buf *out = job->out;
	size_t n;
	struct director_backend_info *info;

	if (reply_is_array(reply, 0))
		apply_backends(reply);
	pthread_mutex_lock(dr.dir_lock);
	n = director_backend_count(dr.dir);
	info = xcalloc(n + 1, sizeof(*info));
	for (size_t i = 0; i < n; i++)
		director_backend_get(dr.dir, i, &info[i]);
	pthread_mutex_unlock(dr.dir_lock);

	long long total = 0;
	buf_append_cstr(out, "{\"store\":\"redis\",\"degraded\":");
	buf_append_cstr(out, atomic_load(&dr.degraded) ? "true" : "false");
	buf_append_cstr(out, ",\"backends\":[");
	for (size_t i = 0; i < n; i++) {
		long long users = info[i].users;
		const char *by = "";
		bool flushing = false;
		for (size_t k = 0; reply_is_array(reply, 0) && k < reply->elements; k++) {
			const struct redisReply *b = reply->element[k];
			if (reply_is_array(b, 8) &&
			    strcmp(reply_str(b->element[0]), info[i].name) == 0) {
				users = reply_int(b->element[6]);
				by = reply_str(b->element[4]);
				flushing = strcmp(reply_str(b->element[5]), "0") != 0;
			}
		}
		total += users;
		if (i > 0)
			buf_append_byte(out, ',');
		buf_append_cstr(out, "{\"name\":");
		json_cstr(out, info[i].name);
		buf_printf(out, ",\"state\":\"%s\",\"weight\":%u,\"tag\":",
			   info[i].state == DIRECTOR_BACKEND_UP ? "up" : "down",
			   info[i].weight);
		json_cstr(out, info[i].tag);
		buf_printf(out, ",\"users\":%lld,\"sessions\":%u", users,
			   info[i].sessions);
		if (by[0] != '\0') {
			buf_append_cstr(out, ",\"by\":");
			json_cstr(out, by);
		}
		if (flushing)
			buf_append_cstr(out, ",\"flushing\":true");
		buf_append_byte(out, '}');
	}
	buf_printf(out, "],\"users\":%lld}", total);
	free(info);
	admin_job_finish(job, 0);
}

static void on_map(const struct redisReply *reply, void *ctx)
{
	struct admin_job *job = ctx;
	struct buf *out = job->out;

	buf_append_cstr(out, "{\"user\":");
	json_cstr(out, job->user);
	if (reply_is_array(reply, 4) && reply->element[0]->type == REDIS_REPLY_STRING) {
		const char *state = reply_str(reply->element[1]);
		buf_append_cstr(out, ",\"backend\":");
		json_cstr(out, reply_str(reply->element[0]));
		if (strcmp(state, "m") == 0) {
			buf_append_cstr(out, ",\"why\":\"moving\",\"to\":");
			json_cstr(out, reply_str(reply->element[3]));
		} else {
			buf_append_cstr(out, ",\"why\":\"mapped\"");
		}
		buf_printf(out, ",\"sessions\":%lld}", reply_int(reply->element[2]));
		admin_job_finish(job, 0);
		return;
	}
	/* unmapped (or the ring unreachable): what placement says */
	char names[8][DIRECTOR_NAME_MAX];
	size_t nfb = 0;
	pthread_mutex_lock(dr.dir_lock);
	enum director_route r = director_place(dr.dir, str_cstr(job->user), NULL,
					       names[0], names + 1, 7, &nfb);
	pthread_mutex_unlock(dr.dir_lock);
	if (r == DIRECTOR_ROUTE_NONE) {
		buf_append_cstr(out, ",\"backend\":null,\"why\":\"no backend available\"}");
	} else {
		buf_append_cstr(out, ",\"backend\":");
		json_cstr(out, names[0]);
		buf_append_cstr(out, ",\"why\":\"hashed\",\"fallbacks\":[");
		for (size_t i = 1; i <= nfb; i++) {
			if (i > 1)
				buf_append_byte(out, ',');
			json_cstr(out, names[i]);
		}
		buf_append_cstr(out, "]}");
	}
	admin_job_finish(job, 0);
}

static void on_users(const struct redisReply *reply, void *ctx)
{
	struct admin_job *job = ctx;
	struct buf *out = job->out;

	if (!reply_is_array(reply, 0)) {
		json_error(out, "ring store unavailable");
		admin_job_finish(job, -1);
		return;
	}
	buf_append_cstr(out, "{\"backend\":");
	json_cstr(out, job->backend);
	buf_append_cstr(out, ",\"users\":[");
	for (size_t i = 0; i + 1 < reply->elements; i += 2) {
		if (i > 0)
			buf_append_byte(out, ',');
		buf_append_cstr(out, "{\"user\":");
		json_cstr(out, reply_str(reply->element[i]));
		buf_printf(out, ",\"sessions\":%lld}", reply_int(reply->element[i + 1]));
	}
	buf_append_cstr(out, "]}");
	admin_job_finish(job, 0);
}

static void on_simple_op(const struct redisReply *reply, void *ctx)
{
	struct admin_job *job = ctx;
	struct buf *out = job->out;

	if (reply == NULL || redis_reply_error(reply) != NULL) {
		json_error(out, "ring store unavailable");
		admin_job_finish(job, -1);
		return;
	}
	if (reply_int(reply) == 0) {
		json_error(out, "unknown backend");
		admin_job_finish(job, -1);
		return;
	}
	buf_append_cstr(out, "{\"backend\":");
	json_cstr(out, job->backend);
	if (job->op == OP_WEIGHT) {
		buf_printf(out, ",\"weight\":%u}", job->weight);
		log_notice("director: backend %s weight set to %u", job->backend,
			   job->weight);
	} else {
		buf_append_cstr(out, ",\"state\":\"up\",\"kicked\":0}");
		log_notice("director: backend %s set up", job->backend);
	}
	admin_job_finish(job, 0);
}

static void on_added(const struct redisReply *reply, void *ctx)
{
	struct admin_job *job = ctx;
	if (reply == NULL || redis_reply_error(reply) != NULL) {
		json_error(job->out, "ring store unavailable");
		admin_job_finish(job, -1);
		return;
	}
	if (reply_int(reply) == 0) {
		json_error(job->out, "backend exists");
		admin_job_finish(job, -1);
		return;
	}
	buf_append_cstr(job->out, "{\"backend\":");
	json_cstr(job->out, job->backend);
	buf_printf(job->out, ",\"weight\":%u,\"added\":true}", job->weight);
	admin_job_finish(job, 0);
}

static void on_kick_published(const struct redisReply *reply, void *ctx)
{
	(void)reply;
	(void)ctx;
}

static void ring_status(struct admin_job *job)
{
	struct buf *out = job->out;
	char master[300], error[256];

	pthread_mutex_lock(&dr.qlock);
	str_copy(str_cstr(dr.master), master, sizeof(master));
	str_copy(str_cstr(dr.last_error), error, sizeof(error));
	pthread_mutex_unlock(&dr.qlock);
	buf_append_cstr(out, "{\"store\":\"redis\",\"proxy\":");
	json_cstr(out, dr.name);
	buf_append_cstr(out, ",\"master\":");
	if (master[0] != '\0')
		json_cstr(out, master);
	else
		buf_append_cstr(out, "null");
	buf_printf(out, ",\"degraded\":%s,\"proxies_alive\":%zu,\"proxies\":[",
		   atomic_load(&dr.degraded) ? "true" : "false",
		   redis_client_ready(dr.rc) ? dr.live_count : 0);
	for (size_t i = 0; redis_client_ready(dr.rc) && i < dr.live_count; i++) {
		if (i > 0)
			buf_append_byte(out, ',');
		json_cstr(out, dr.live[i]);
	}
	buf_append_cstr(out, "]");
	if (error[0] != '\0' && atomic_load(&dr.degraded)) {
		buf_append_cstr(out, ",\"error\":");
		json_cstr(out, error);
	}
	pthread_mutex_lock(dr.dir_lock);
	buf_printf(out, ",\"cached_users\":%zu,\"lookups\":%llu,\"lookup_failures\":%llu}",
		   director_mapping_count(dr.dir),
		   (unsigned long long)atomic_load(&dr.lookups),
		   (unsigned long long)atomic_load(&dr.lookup_failures));
	pthread_mutex_unlock(dr.dir_lock);
	admin_job_finish(job, 0);
}

static void run_admin(struct admin_job *job)
{
	bool ready = redis_client_ready(dr.rc);

	switch (job->op) {
	case OP_RING:
		ring_status(job);
		return;
	case OP_STATUS:
		if (ready)
			eval(lua_load, on_status_load, job, 0, NULL);
		else
			on_status_load(NULL, job);
		return;
	case OP_MAP: {
		char key[USER_MAX + 160];
		str_printf(key, sizeof(key), "%su:%s", dr.prefix, job->user);
		const char *args[] = { "HMGET", key, "b", "s", "n", "to" };
		if (ready)
			redis_client_commandv(dr.rc, on_map, job, 6, args);
		else
			on_map(NULL, job);
		return;
	}
	default:
		break;
	}
	if (!ready) {
		json_error(job->out, "ring store unavailable (degraded)");
		admin_job_finish(job, -1);
		return;
	}
	switch (job->op) {
	case OP_USERS: {
		const char *args[] = { job->backend };
		eval(lua_users, on_users, job, 1, args);
		break;
	}
	case OP_WEIGHT: {
		char w[16];
		u64_str(job->weight, w, sizeof(w));
		const char *args[] = { job->backend, w };
		eval(lua_set_weight, on_simple_op, job, 2, args);
		break;
	}
	case OP_UP: {
		const char *args[] = { job->backend };
		eval(lua_set_up, on_simple_op, job, 1, args);
		break;
	}
	case OP_DOWN:
		start_backend_round(job->backend, "down-admin", "down", job);
		break;
	case OP_FLUSH: {
		const char *args[] = { job->backend };
		eval(lua_flush_size, on_flush_size, job, 1, args);
		break;
	}
	case OP_MOVE:
		start_move_round(job->user, job->backend, job);
		break;
	case OP_REMOVE:
		start_backend_round(job->backend, "remove", "remove", job);
		break;
	case OP_ADD: {
		char w[16];
		u64_str(job->weight, w, sizeof(w));
		const char *args[] = { job->backend, w, job->backend };
		eval(lua_add, on_added, job, 3, args);
		break;
	}
	case OP_KICK: {
		char channel[200], msg[USER_MAX + 80];
		unsigned int kicked = proxy_kick(job->user, NULL,
						 "Disconnected by administrator.", false);
		str_printf(channel, sizeof(channel), "%sevents", dr.prefix);
		str_printf(msg, sizeof(msg), "kick %s %s", job->user, dr.name);
		const char *args[] = { "PUBLISH", channel, msg };
		redis_client_commandv(dr.rc, on_kick_published, NULL, 3, args);
		log_notice("director: user %s kicked (%u sessions here, others told)",
			   job->user, kicked);
		buf_append_cstr(job->out, "{\"user\":");
		json_cstr(job->out, job->user);
		buf_printf(job->out, ",\"kicked\":%u}", kicked);
		admin_job_finish(job, 0);
		break;
	}
	default:
		break;
	}
}

/* Runs an admin job on the store thread and waits for its answer. */
static int admin_call(enum admin_op op, const char *user, const char *backend,
		      unsigned int weight, struct buf *out)
{
	struct admin_job *job = xcalloc(1, sizeof(*job));
	struct job *j = xcalloc(1, sizeof(*j));
	struct timespec deadline;
	int ret;

	if (!atomic_load(&dr.started)) {
		xfree(&job);
		xfree(&j);
		return json_error(out, "the ring store is not running");
	}
	job->op = op;
	if (user != NULL)
		str_copy(str_cstr(user), job->user, sizeof(job->user));
	if (backend != NULL)
		str_copy(str_cstr(backend), job->backend, sizeof(job->backend));
	job->weight = weight;
	job->out = buf_new(1024, 64u * 1024 * 1024);
	job->refs = 2;
	j->kind = JOB_ADMIN;
	j->admin = job;
	if (atomic_load(&dr.answer_hook) != NULL) {
		job->async = true;
		job->token = dr.admin_token;
		post(j);
		return DIRECTING_PENDING;
	}
	post(j);

	uint64_t wait = dr.move_timeout_msecs + dr.redis_timeout_msecs * 4 + 1000;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += (time_t)(wait / 1000);
	deadline.tv_nsec += (long)(wait % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&dr.qlock);
	while (!job->done) {
		if (pthread_cond_timedwait(&dr.qcond, &dr.qlock, &deadline) == ETIMEDOUT)
			break;
	}
	if (job->done) {
		buf_append(out, job->out->data, job->out->len);
		ret = job->ret;
	} else {
		ret = json_error(out, "the ring store did not answer in time");
	}
	admin_job_unref(job);
	pthread_mutex_unlock(&dr.qlock);
	return ret;
}

int dredis_status(struct buf *out)
{
	return admin_call(OP_STATUS, NULL, NULL, 0, out);
}

int dredis_ring_status(struct buf *out)
{
	return admin_call(OP_RING, NULL, NULL, 0, out);
}

int dredis_map(const char *user, struct buf *out)
{
	return admin_call(OP_MAP, user, NULL, 0, out);
}

int dredis_users(const char *backend, struct buf *out)
{
	return admin_call(OP_USERS, NULL, backend, 0, out);
}

int dredis_set_weight(const char *backend, unsigned int weight, struct buf *out)
{
	return admin_call(OP_WEIGHT, NULL, backend, weight, out);
}

int dredis_set_up(const char *backend, bool up, struct buf *out)
{
	return admin_call(up ? OP_UP : OP_DOWN, NULL, backend, 0, out);
}

int dredis_flush(const char *backend, struct buf *out)
{
	return admin_call(OP_FLUSH, NULL, backend, 0, out);
}

int dredis_move(const char *user, const char *backend, struct buf *out)
{
	return admin_call(OP_MOVE, user, backend, 0, out);
}

int dredis_kick(const char *user, struct buf *out)
{
	return admin_call(OP_KICK, user, NULL, 0, out);
}

int dredis_add(const char *host, unsigned int weight, struct buf *out)
{
	return admin_call(OP_ADD, NULL, host, weight, out);
}

int dredis_remove(const char *name, struct buf *out)
{
	return admin_call(OP_REMOVE, NULL, name, 0, out);
}

/* ---- the login path's entry points ------------------------------------------------ */

struct directing_lookup *dredis_lookup(struct event_base *base,
				       const char *user_key, const char *tag,
				       directing_lookup_fn *cb, void *ctx)
{
	if (!atomic_load(&dr.started) || !atomic_load(&dr.authoritative))
		return NULL; /* degraded or reconciling: the cache decides */
	struct directing_lookup *l = xcalloc(1, sizeof(*l));
	struct job *j = xcalloc(1, sizeof(*j));
	atomic_init(&l->state, LOOKUP_PENDING);
	l->base = base;
	l->cb = cb;
	l->ctx = ctx;
	l->user = xstrdup(user_key);
	l->tag = xstrdup(tag != NULL ? tag : "");
	j->kind = JOB_LOOKUP;
	j->lookup = l;
	post(j);
	return l;
}

void dredis_lookup_cancel(struct directing_lookup **lp)
{
	struct directing_lookup *l = *lp;
	int expect = LOOKUP_PENDING;

	if (l == NULL)
		return;
	*lp = NULL;
	/* pending: the store thread frees it; answered: the delivery does,
	 * and must not call back */
	if (!atomic_compare_exchange_strong(&l->state, &expect, LOOKUP_CANCELLED))
		l->cb = NULL;
}

void dredis_session(const char *user_key, const char *backend, int delta)
{
	if (!atomic_load(&dr.started) || atomic_load(&dr.degraded))
		return;
	struct job *j = xcalloc(1, sizeof(*j));
	j->kind = JOB_SESSION;
	str_copy(str_cstr(user_key), j->user, sizeof(j->user));
	str_copy(str_cstr(backend), j->backend, sizeof(j->backend));
	j->delta = delta;
	post(j);
}

void dredis_health_vote(const char *backend, bool failing)
{
	if (!atomic_load(&dr.started))
		return;
	struct job *j = xcalloc(1, sizeof(*j));
	j->kind = JOB_VOTE;
	str_copy(str_cstr(backend), j->backend, sizeof(j->backend));
	j->failing = failing;
	post(j);
}

void dredis_set_answer_hook(directing_answer_fn *fn)
{
	atomic_store(&dr.answer_hook, fn);
}

void dredis_set_admin_token(uint64_t token)
{
	dr.admin_token = token;
}

bool dredis_degraded(void)
{
	return atomic_load(&dr.degraded);
}

bool dredis_authoritative(void)
{
	return atomic_load(&dr.authoritative);
}

void dredis_metrics(struct dredis_metrics *m)
{
	m->lookups = atomic_load(&dr.lookups);
	m->lookup_failures = atomic_load(&dr.lookup_failures);
	m->store_calls = atomic_load(&dr.store_calls);
	m->store_latency_usecs_sum = atomic_load(&dr.store_latency_usecs_sum);
	m->degraded = atomic_load(&dr.degraded);
}

/* ---- life ------------------------------------------------------------------------ */

int dredis_init(const struct proxy_config *cfg, struct director *dir,
		pthread_mutex_t *lock, char *err, size_t errsize)
{
	const struct proxy_settings *set = &cfg->set;
	struct redis_client_settings rs = { 0 };
	struct redis_client_callbacks cbs = {
		.connected = on_connected,
		.disconnected = on_disconnected,
		.message = on_message,
	};

	memset(&dr, 0, sizeof(dr));
	dr.dir = dir;
	dr.dir_lock = lock;
	str_copy(str_cstr(set->redis_prefix != NULL ? set->redis_prefix : ""),
		 dr.prefix, sizeof(dr.prefix));
	if (set->proxy_name != NULL && set->proxy_name[0] != '\0') {
		str_copy(str_cstr(set->proxy_name), dr.name, sizeof(dr.name));
	} else if (gethostname(dr.name, sizeof(dr.name)) < 0) {
		str_copy(STR("proxy"), dr.name, sizeof(dr.name));
	}
	dr.name[sizeof(dr.name) - 1] = '\0';
	for (char *p = dr.name; *p != '\0'; p++) {
		if (*p <= ' ' || *p == 0x7f) {
			str_printf(err, errsize, "proxy_name: no spaces or control "
				   "characters allowed");
			return -1;
		}
	}
	str_printf(dr.channel, sizeof(dr.channel), "%sevents", dr.prefix);
	dr.user_expire_msecs = set->user_expire_msecs > 0 ? set->user_expire_msecs :
							     1000;
	dr.heartbeat_msecs = set->proxy_heartbeat_interval_msecs;
	dr.dead_msecs = set->proxy_dead_timeout_msecs;
	dr.move_timeout_msecs = set->director_move_timeout_msecs;
	dr.redis_timeout_msecs = set->redis_timeout_msecs;
	/* a batch's users travel in one event message: keep it bounded */
	dr.flush_batch = set->director_flush_batch > 1000 ? 1000 :
			 (size_t)set->director_flush_batch;
	dr.flush_interval_msecs = set->director_flush_interval_msecs;

	rs.address = set->redis_sentinels.count > 0 ? "" : set->redis_address;
	for (size_t i = 0; i < set->redis_sentinels.count &&
			   i < REDIS_SENTINELS_MAX; i++)
		rs.sentinels[rs.sentinel_count++] = set->redis_sentinels.items[i];
	rs.sentinel_master = set->redis_sentinel_master;
	rs.password = set->redis_password;
	rs.channel = dr.channel;
	rs.timeout_msecs = set->redis_timeout_msecs;
	rs.reconnect_msecs = 1000;

	dr.base = event_base_new();
	if (dr.base == NULL) {
		str_printf(err, errsize, "redis store: event_base_new failed");
		return -1;
	}
	pthread_mutex_init(&dr.qlock, NULL);
	pthread_cond_init(&dr.qcond, NULL);
	dr.wake_ev = event_new(dr.base, -1, EV_READ | EV_PERSIST, on_wake, NULL);
	event_add(dr.wake_ev, NULL);
	dr.rc = redis_client_new(dr.base, &rs, &cbs, NULL);
	dr.heartbeat = net_timer_new(dr.base, heartbeat_tick, NULL);
	dr.refresh = net_timer_new(dr.base, refresh_tick, NULL);
	dr.reconcile_timer = net_timer_new(dr.base, reconcile_retry, NULL);
	atomic_store(&dr.degraded, false);
	atomic_store(&dr.authoritative, false);
	dr.configured = true;
	log_notice("director: redis store %s (prefix %s), this proxy is %s",
		   set->redis_sentinels.count > 0 ? "via sentinels" : set->redis_address,
		   dr.prefix, dr.name);
	return 0;
}

void dredis_start(void)
{
	if (!dr.configured || atomic_load(&dr.started))
		return;
	if (pthread_create(&dr.thread, NULL, store_thread, NULL) != 0) {
		log_error("director: cannot start the redis store thread: %s",
			  strerror(errno));
		return;
	}
	atomic_store(&dr.started, true);
}

void dredis_stop(void)
{
	if (!dr.configured || !atomic_load(&dr.started))
		return;
	pthread_mutex_lock(&dr.qlock);
	dr.stopping = true;
	pthread_mutex_unlock(&dr.qlock);
	event_active(dr.wake_ev, EV_READ, 0);
	pthread_join(dr.thread, NULL);
	atomic_store(&dr.started, false);
	/* the thread is gone: its connections close here, and what still
	 * waits is answered (lookups with BUSY, admin calls with an error)
	 * while the workers' loops still run */
	redis_client_free(&dr.rc);
	while (dr.rounds != NULL) {
		round_answer(dr.rounds, -1, "the proxy is stopping", 0);
		round_free(dr.rounds);
	}
	while (dr.flushes != NULL) {
		paced_flush_answer(dr.flushes, -1, "the proxy is stopping");
		paced_flush_free(dr.flushes);
	}
	/* lookups waiting for a move to finish (retry timers) */
	while (dr.pending != NULL)
		lookup_complete(dr.pending, DIRECTING_LOOKUP_BUSY);
	for (struct job *j = dr.queue_head, *next; j != NULL; j = next) {
		next = j->next;
		if (j->kind == JOB_LOOKUP)
			lookup_complete(j->lookup, DIRECTING_LOOKUP_BUSY);
		else if (j->kind == JOB_ADMIN) {
			json_error(j->admin->out, "the proxy is stopping");
			admin_job_finish(j->admin, -1);
		}
		free(j->names);
		free(j->tags);
		free(j->weights);
		free(j->weight_changed);
		free(j);
	}
	dr.queue_head = dr.queue_tail = NULL;
}

void dredis_deinit(void)
{
	if (!dr.configured)
		return;
	dredis_stop();
	redis_client_free(&dr.rc);
	net_timer_free(&dr.heartbeat);
	net_timer_free(&dr.refresh);
	net_timer_free(&dr.reconcile_timer);
	event_free(dr.wake_ev);
	event_base_free(dr.base);
	pthread_cond_destroy(&dr.qcond);
	pthread_mutex_destroy(&dr.qlock);
	dr.configured = false;
}

void dredis_reload(const struct proxy_config *cfg, const bool *weight_changed)
{
	if (!atomic_load(&dr.started))
		return;
	struct job *j = xcalloc(1, sizeof(*j));
	j->kind = JOB_RELOAD;
	j->count = cfg->backend_count;
	j->names = xcalloc(j->count + 1, sizeof(*j->names));
	j->tags = xcalloc(j->count + 1, sizeof(*j->tags));
	j->weights = xcalloc(j->count + 1, sizeof(*j->weights));
	j->weight_changed = xcalloc(j->count + 1, sizeof(*j->weight_changed));
	for (size_t i = 0; i < j->count; i++) {
		const struct backend_settings *bs = cfg->backends[i].set;
		str_copy(str_cstr(bs->name), j->names[i], DIRECTOR_NAME_MAX);
		str_copy(str_cstr(bs->tag != NULL ? bs->tag : ""), j->tags[i],
			 DIRECTOR_NAME_MAX);
		j->weights[i] = (uint32_t)bs->weight;
		j->weight_changed[i] = weight_changed[i];
	}
	post(j);
}
