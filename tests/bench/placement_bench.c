/*
 * placement_bench: in-process micro-benchmark of the director's placement
 * (issue 6, scenario 6). Single-threaded, so every figure is per core.
 *
 *   placement_bench [--backends 10,500] [--seconds S] [--users N] [--json FILE]
 *
 * For each backend count it measures, each for about S seconds:
 *   pick      ring_pick(): the best backend of a pre-hashed user
 *   rank      ring_rank(..., RING_RANK_MAX): best + fallbacks (what a
 *             director login computes, ring/director.c)
 *   hash_pick ring_hash(user name) + ring_pick()
 *   place     director_place(): the whole placement call on a struct
 *             director (names, tags, fallbacks copied out)
 *   route     director_route() of an already mapped user (the common
 *             case: a user with a mapping is a hash-table lookup)
 * and prints one JSON object (also to --json FILE).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "str.h"
#include "ring/placement.h"
#include "ring/director.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Keeps the compiler from dropping the work. */
static volatile uint64_t sink;

struct result {
	double ops;
	double wall;
	double cpu;
};

#define BATCH 4096u

static struct result bench_pick(const struct ring_candidate *c, size_t n,
				const uint64_t *hashes, size_t nusers,
				double seconds, int mode)
{
	struct result r = { 0, 0, 0 };
	uint64_t acc = 0;
	size_t u = 0;
	double t0 = now_s(), c0 = cpu_s(), t;

	do {
		for (unsigned int i = 0; i < BATCH; i++) {
			uint64_t h = hashes[u];
			if (++u == nusers)
				u = 0;
			if (mode == 0) {
				acc += (uint64_t)ring_pick(c, n, h);
			} else {
				uint32_t order[RING_RANK_MAX];
				size_t k = ring_rank(c, n, h, order,
						     RING_RANK_MAX);
				acc += k + order[0];
			}
		}
		r.ops += BATCH;
		t = now_s();
	} while (t - t0 < seconds);
	r.wall = t - t0;
	r.cpu = cpu_s() - c0;
	sink += acc;
	return r;
}

static struct result bench_hash_pick(const struct ring_candidate *c, size_t n,
				     char (*names)[40], size_t nusers,
				     double seconds)
{
	struct result r = { 0, 0, 0 };
	uint64_t acc = 0;
	size_t u = 0;
	double t0 = now_s(), c0 = cpu_s(), t;

	do {
		for (unsigned int i = 0; i < BATCH; i++) {
			acc += (uint64_t)ring_pick(c, n,
						   ring_hash(str_cstr(names[u])));
			if (++u == nusers)
				u = 0;
		}
		r.ops += BATCH;
		t = now_s();
	} while (t - t0 < seconds);
	r.wall = t - t0;
	r.cpu = cpu_s() - c0;
	sink += acc;
	return r;
}

static struct result bench_director(struct director *d, char (*names)[40],
				    size_t nusers, double seconds, int route)
{
	struct result r = { 0, 0, 0 };
	uint64_t acc = 0;
	size_t u = 0;
	char backend[DIRECTOR_NAME_MAX];
	char fb[RING_RANK_MAX][DIRECTOR_NAME_MAX];
	size_t nfb = 0;
	double t0 = now_s(), c0 = cpu_s(), t;

	do {
		for (unsigned int i = 0; i < BATCH / 8; i++) {
			struct str user = str_cstr(names[u]);
			if (++u == nusers)
				u = 0;
			enum director_route rt;
			if (route)
				rt = director_route(d, user, NULL, 1000, backend,
						    fb, 2, &nfb);
			else
				rt = director_place(d, user, NULL, backend, fb,
						    2, &nfb);
			acc += (uint64_t)rt + (uint8_t)backend[0] + nfb;
		}
		r.ops += BATCH / 8;
		t = now_s();
	} while (t - t0 < seconds);
	r.wall = t - t0;
	r.cpu = cpu_s() - c0;
	sink += acc;
	return r;
}

static void emit(FILE *f, const char *name, struct result r, int last)
{
	fprintf(f, "      \"%s\": {\"ops\": %.0f, \"wall_s\": %.4f, "
		"\"cpu_s\": %.4f, \"per_s\": %.1f, \"per_cpu_s\": %.1f}%s\n",
		name, r.ops, r.wall, r.cpu, r.ops / r.wall,
		r.cpu > 0 ? r.ops / r.cpu : 0.0, last ? "" : ",");
}

int main(int argc, char **argv)
{
	const char *backends_arg = "10,500";
	const char *json_path = NULL;
	double seconds = 1.0;
	size_t nusers = 100000;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--backends") == 0 && i + 1 < argc)
			backends_arg = argv[++i];
		else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (strcmp(argv[i], "--users") == 0 && i + 1 < argc)
			nusers = (size_t)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
			json_path = argv[++i];
		else {
			fprintf(stderr, "usage: %s [--backends 10,500] "
				"[--seconds S] [--users N] [--json FILE]\n",
				argv[0]);
			return 2;
		}
	}
	if (nusers == 0 || seconds <= 0) {
		fprintf(stderr, "bad --users or --seconds\n");
		return 2;
	}

	char (*names)[40] = calloc(nusers, sizeof(*names));
	uint64_t *hashes = calloc(nusers, sizeof(*hashes));
	if (names == NULL || hashes == NULL)
		return 1;
	for (size_t i = 0; i < nusers; i++) {
		snprintf(names[i], sizeof(names[i]), "user%zu@example.com",
			 i + 1);
		hashes[i] = ring_hash(str_cstr(names[i]));
	}

	char *out = NULL;
	size_t outlen = 0;
	FILE *f = open_memstream(&out, &outlen);
	if (f == NULL)
		return 1;
	fprintf(f, "{\n  \"seconds\": %.2f,\n  \"users\": %zu,\n"
		"  \"rank_max\": %d,\n  \"results\": {\n", seconds, nusers,
		RING_RANK_MAX);

	char *list = strdup(backends_arg);
	int first = 1;
	for (char *tok = strtok(list, ","); tok != NULL;
	     tok = strtok(NULL, ",")) {
		size_t n = (size_t)strtoul(tok, NULL, 10);
		if (n == 0)
			continue;
		struct ring_candidate *c = calloc(n, sizeof(*c));
		struct director *d = director_new(15 * 60 * 1000);
		if (c == NULL || d == NULL)
			return 1;
		for (size_t i = 0; i < n; i++) {
			char bn[40];
			snprintf(bn, sizeof(bn), "b%zu", i + 1);
			c[i].id_hash = ring_hash(str_cstr(bn));
			c[i].weight = 100;
			if (director_backend_add(d, bn, 100, NULL) != 0) {
				fprintf(stderr, "director_backend_add %s failed\n",
					bn);
				return 1;
			}
		}
		/* Map every user once, so route() finds a mapping. */
		char backend[DIRECTOR_NAME_MAX];
		char fb[2][DIRECTOR_NAME_MAX];
		size_t nfb;
		size_t mapped = nusers < 20000 ? nusers : 20000;
		for (size_t i = 0; i < mapped; i++) {
			struct str user = str_cstr(names[i]);
			director_route(d, user, NULL, 1000, backend, fb, 2,
				       &nfb);
			director_session_begin(d, user, backend, 1000);
		}

		struct result pick = bench_pick(c, n, hashes, nusers, seconds,
						0);
		struct result rank = bench_pick(c, n, hashes, nusers, seconds,
						1);
		struct result hp = bench_hash_pick(c, n, names, nusers,
						   seconds);
		struct result place = bench_director(d, names, nusers,
						     seconds, 0);
		struct result route = bench_director(d, names, mapped,
						     seconds, 1);

		fprintf(f, "%s    \"%zu\": {\n", first ? "" : ",\n", n);
		emit(f, "pick", pick, 0);
		emit(f, "rank", rank, 0);
		emit(f, "hash_pick", hp, 0);
		emit(f, "place", place, 0);
		emit(f, "route_mapped", route, 1);
		fprintf(f, "    }");
		first = 0;
		fprintf(stderr, "%zu backends: pick %.0f/s rank %.0f/s "
			"hash+pick %.0f/s director_place %.0f/s "
			"director_route(mapped) %.0f/s\n", n,
			pick.ops / pick.wall, rank.ops / rank.wall,
			hp.ops / hp.wall, place.ops / place.wall,
			route.ops / route.wall);
		director_free(&d);
		free(c);
	}
	fprintf(f, "\n  }\n}\n");
	fclose(f);
	fputs(out, stdout);
	if (json_path != NULL) {
		FILE *jf = fopen(json_path, "w");
		if (jf == NULL) {
			perror(json_path);
			return 1;
		}
		fputs(out, jf);
		fclose(jf);
	}
	free(out);
	free(list);
	free(names);
	free(hashes);
	return sink == 42 ? 3 : 0;
}
