#include "textmatch.h"

#include <locale.h>
#include <pthread.h>
#include <stdlib.h>
#include <wctype.h>

#include "xmalloc.h"

/* The matcher works on "units": a folded code point (at most 0x10FFFF) or
 * an invalid byte b as RAW_UNIT | b, which no code point can equal. */
#define RAW_UNIT 0x80000000u

struct textmatch_pattern {
	char *needle; /* copy, as given */
	size_t needle_len;
	uint32_t *units; /* folded needle */
	size_t *fail;    /* KMP: longest proper border of units[0..i] */
	size_t count;
};

static pthread_once_t fold_once = PTHREAD_ONCE_INIT;
static locale_t fold_locale = (locale_t)0;

static void fold_locale_init(void)
{
	/* Created once and never freed: it is process-wide, read-only and
	 * used through towlower_l/towupper_l only. */
	fold_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

uint32_t textmatch_fold(uint32_t cp)
{
	if (cp < 0x80)
		return cp >= 'A' && cp <= 'Z' ? cp - 'A' + 'a' : cp;
	if (cp > 0x10ffff)
		return cp;
	pthread_once(&fold_once, fold_locale_init);
	if (fold_locale == (locale_t)0)
		return cp;
	/* Upper then lower: this joins the variants that only meet through
	 * their capital (final sigma, long s, titlecase digraphs). */
	wint_t u = towupper_l((wint_t)cp, fold_locale);
	return (uint32_t)towlower_l(u, fold_locale);
}

/* Whether b may be continuation byte number pos (1-based) of a sequence
 * starting with lead (Unicode table 3-7: no overlongs, no surrogates,
 * nothing above U+10FFFF). */
static bool utf8_cont_ok(uint8_t lead, unsigned int pos, uint8_t b)
{
	uint8_t lo = 0x80, hi = 0xbf;

	if (pos == 1) {
		switch (lead) {
		case 0xe0:
			lo = 0xa0;
			break;
		case 0xed:
			hi = 0x9f;
			break;
		case 0xf0:
			lo = 0x90;
			break;
		case 0xf4:
			hi = 0x8f;
			break;
		default:
			break;
		}
	}
	return b >= lo && b <= hi;
}

/* Decodes one byte with the state in m; writes 0..4 units to out and
 * returns how many. */
static size_t decode_byte(struct textmatch *m, uint8_t b, uint32_t out[4])
{
	size_t n = 0;

	if (m->need != 0) {
		if (utf8_cont_ok(m->pend[0], m->pend_len, b)) {
			m->cp = m->cp << 6 | (uint32_t)(b & 0x3f);
			m->pend[m->pend_len++] = b;
			if (m->pend_len == m->need) {
				out[n++] = textmatch_fold(m->cp);
				m->need = 0;
				m->pend_len = 0;
			}
			return n;
		}
		/* A broken sequence: its bytes stand for themselves, and b
		 * starts afresh (it may begin a valid sequence). */
		for (unsigned int i = 0; i < m->pend_len; i++)
			out[n++] = RAW_UNIT | m->pend[i];
		m->need = 0;
		m->pend_len = 0;
	}
	if (b < 0x80) {
		out[n++] = textmatch_fold(b);
	} else if (b >= 0xc2 && b <= 0xdf) {
		m->need = 2;
		m->cp = b & 0x1f;
	} else if (b >= 0xe0 && b <= 0xef) {
		m->need = 3;
		m->cp = b & 0x0f;
	} else if (b >= 0xf0 && b <= 0xf4) {
		m->need = 4;
		m->cp = b & 0x07;
	} else {
		out[n++] = RAW_UNIT | b;
	}
	if (m->need != 0) {
		m->pend[0] = b;
		m->pend_len = 1;
	}
	return n;
}

/* Ends the text: an unfinished sequence becomes raw units. */
static size_t decode_flush(struct textmatch *m, uint32_t out[4])
{
	size_t n = 0;
	for (unsigned int i = 0; i < m->pend_len; i++)
		out[n++] = RAW_UNIT | m->pend[i];
	m->need = 0;
	m->pend_len = 0;
	return n;
}

int textmatch_pattern_new(struct str needle, struct textmatch_pattern **pat_r,
			  const char **error_r)
{
	*pat_r = NULL;
	if (needle.len > TEXTMATCH_MAX_NEEDLE) {
		*error_r = "Search string too long";
		return -1;
	}
	struct textmatch_pattern *pat = xcalloc(1, sizeof(*pat));
	pat->needle = xmalloc(needle.len + 1);
	if (needle.len > 0)
		memcpy(pat->needle, needle.p, needle.len);
	pat->needle[needle.len] = '\0';
	pat->needle_len = needle.len;
	/* Never more units than bytes; +1 keeps the allocation non-empty. */
	pat->units = xreallocarray(NULL, needle.len + 1, sizeof(uint32_t));
	pat->fail = xreallocarray(NULL, needle.len + 1, sizeof(size_t));

	struct textmatch dec = {0};
	uint32_t out[4];
	for (size_t i = 0; i < needle.len; i++) {
		size_t n = decode_byte(&dec, (uint8_t)needle.p[i], out);
		for (size_t k = 0; k < n; k++)
			pat->units[pat->count++] = out[k];
	}
	size_t n = decode_flush(&dec, out);
	for (size_t k = 0; k < n; k++)
		pat->units[pat->count++] = out[k];

	/* Knuth-Morris-Pratt failure function. */
	if (pat->count > 0)
		pat->fail[0] = 0;
	size_t k = 0;
	for (size_t i = 1; i < pat->count; i++) {
		while (k > 0 && pat->units[i] != pat->units[k])
			k = pat->fail[k - 1];
		if (pat->units[i] == pat->units[k])
			k++;
		pat->fail[i] = k;
	}
	*pat_r = pat;
	return 0;
}

void textmatch_pattern_free(struct textmatch_pattern **pat)
{
	if (*pat == NULL)
		return;
	free((*pat)->needle);
	free((*pat)->units);
	free((*pat)->fail);
	xfree(pat);
}

struct str textmatch_pattern_needle(const struct textmatch_pattern *pat)
{
	return str_from(pat->needle, pat->needle_len);
}

bool textmatch_pattern_is_empty(const struct textmatch_pattern *pat)
{
	return pat->count == 0;
}

void textmatch_init(struct textmatch *m, const struct textmatch_pattern *pat)
{
	*m = (struct textmatch){.pat = pat, .matched = pat->count == 0};
}

static void step(struct textmatch *m, uint32_t unit)
{
	const struct textmatch_pattern *pat = m->pat;
	size_t k = m->state;

	while (k > 0 && pat->units[k] != unit)
		k = pat->fail[k - 1];
	if (pat->units[k] == unit)
		k++;
	if (k == pat->count)
		m->matched = true;
	m->state = k;
}

bool textmatch_feed(struct textmatch *m, const void *data, size_t len)
{
	const uint8_t *p = data;
	uint32_t out[4];

	for (size_t i = 0; i < len && !m->matched; i++) {
		size_t n = decode_byte(m, p[i], out);
		for (size_t k = 0; k < n && !m->matched; k++)
			step(m, out[k]);
	}
	return m->matched;
}

bool textmatch_finish(struct textmatch *m)
{
	uint32_t out[4];
	size_t n = decode_flush(m, out);

	for (size_t k = 0; k < n && !m->matched; k++)
		step(m, out[k]);
	return m->matched;
}

bool textmatch_contains(const struct textmatch_pattern *pat, struct str text)
{
	struct textmatch m;

	textmatch_init(&m, pat);
	if (text.len > 0)
		textmatch_feed(&m, text.p, text.len);
	return textmatch_finish(&m);
}
