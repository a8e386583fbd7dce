#ifndef MR_TEXTMATCH_H
#define MR_TEXTMATCH_H

/* Case-insensitive substring search over UTF-8 text that arrives in chunks
 * split at any byte, also inside a multibyte sequence (IMAP SEARCH text
 * keys over a message streamed from disk).
 *
 * Two objects, so that one parsed search can be evaluated from several
 * places without shared mutable state:
 *   struct textmatch_pattern  the case-folded needle and its KMP table;
 *                             immutable once built, O(needle) memory;
 *   struct textmatch          the scan state over one text: a few words,
 *                             kept on the caller's stack, no allocation.
 *
 * Folding: each code point c becomes towlower(towupper(c)) in the C.UTF-8
 * locale (a locale object created once, used through the *_l functions, so
 * no setlocale and no thread hazards). That is Unicode simple case folding
 * for nearly all scripts ("ſ" and "s", "ς" and "σ", "K" KELVIN SIGN and
 * "k" all meet); known departures: dotless "ı" folds to "i", and there is
 * no full folding ("ß" does not match "ss") and no normalisation.
 * When C.UTF-8 is missing, only ASCII is folded.
 *
 * Invalid UTF-8 (stray continuation bytes, overlong forms, surrogates,
 * code points above U+10FFFF, truncated sequences) is taken one byte at a
 * time and each such byte matches only the same byte, whichever way the
 * text was split. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "str.h"

/* Longest needle in bytes. IMAP search strings are client input; the cap
 * keeps a pattern at most a few KiB. */
#define TEXTMATCH_MAX_NEEDLE 1024

struct textmatch_pattern;

/* Builds a pattern from needle (UTF-8, may be invalid, may contain any
 * byte). Returns 0 and *pat_r, or -1 with *error_r (static) when needle is
 * longer than TEXTMATCH_MAX_NEEDLE. An empty needle matches every text,
 * even an empty one. */
int textmatch_pattern_new(struct str needle, struct textmatch_pattern **pat_r,
			  const char **error_r);
/* Frees *pat and sets it to NULL; safe on NULL. */
void textmatch_pattern_free(struct textmatch_pattern **pat);
/* The needle as given (not folded). */
struct str textmatch_pattern_needle(const struct textmatch_pattern *pat);
bool textmatch_pattern_is_empty(const struct textmatch_pattern *pat);

/* Scan state over one text. The fields are private. */
struct textmatch {
	const struct textmatch_pattern *pat;
	size_t state;     /* folded code points of the needle matched */
	uint32_t cp;      /* UTF-8 decoding: the code point so far */
	uint8_t pend[4];  /* bytes of an unfinished sequence */
	uint8_t pend_len; /* how many are in pend */
	uint8_t need;     /* the sequence's full length (0: none open) */
	bool matched;
};

/* Starts (or restarts) a scan of a new text with pat. */
void textmatch_init(struct textmatch *m, const struct textmatch_pattern *pat);
/* Feeds the next len bytes of the text. Returns true once the needle has
 * been seen (and keeps returning true; further input is skipped). */
bool textmatch_feed(struct textmatch *m, const void *data, size_t len);
/* Ends the text: bytes of an unfinished UTF-8 sequence at its end count as
 * invalid bytes, which a needle ending in the same invalid bytes matches.
 * Returns the final answer. */
bool textmatch_finish(struct textmatch *m);

/* One-shot: whether text contains the pattern. */
bool textmatch_contains(const struct textmatch_pattern *pat, struct str text);

/* The folded form of one code point (as the matcher uses it). For tests and
 * for callers comparing single characters. */
uint32_t textmatch_fold(uint32_t cp);

#endif
