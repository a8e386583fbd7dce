#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "str.h"
#include "textmatch.h"

static struct textmatch_pattern *pat_new(const char *needle, size_t len)
{
	struct textmatch_pattern *pat = NULL;
	const char *error = NULL;

	assert_int_equal(
	    textmatch_pattern_new(str_from(needle, len), &pat, &error), 0);
	assert_non_null(pat);
	return pat;
}

/* Matches text against needle whole, and split at every pair of byte
 * positions (three chunks, so also twice inside one UTF-8 sequence); all
 * answers must agree. Returns the answer. */
static bool match_all_splits(const char *needle, size_t nlen, const char *text,
			     size_t tlen)
{
	struct textmatch_pattern *pat = pat_new(needle, nlen);
	bool whole = textmatch_contains(pat, str_from(text, tlen));

	for (size_t i = 0; i <= tlen; i++) {
		for (size_t j = i; j <= tlen; j++) {
			struct textmatch m;
			textmatch_init(&m, pat);
			textmatch_feed(&m, text, i);
			textmatch_feed(&m, text + i, j - i);
			textmatch_feed(&m, text + j, tlen - j);
			if (textmatch_finish(&m) != whole)
				fail_msg("split %zu/%zu of '%s' differs", i, j,
					 text);
		}
	}
	textmatch_pattern_free(&pat);
	assert_null(pat);
	return whole;
}

#define M(needle, text)                                                        \
	match_all_splits(needle, sizeof(needle) - 1, text, sizeof(text) - 1)

static void test_ascii(void **state)
{
	(void)state;
	assert_true(M("hello", "Say HELLO world"));
	assert_true(M("HeLLo", "hello"));
	assert_false(M("hello", "hell"));
	assert_false(M("hello", "help lo"));
	assert_true(M("o w", "hello world"));
	assert_true(M("a\0b", "xa\0by"));
	assert_false(M("ab", ""));
	/* KMP fallbacks */
	assert_true(M("aab", "aaab"));
	assert_true(M("abab", "ababab"));
	assert_true(M("abcabd", "abcabcabd"));
	assert_false(M("abcabd", "abcabcab"));
	assert_true(M("[", "x[y")); /* punctuation is not folded */
	assert_false(M("@", "`"));
}

static void test_empty(void **state)
{
	struct textmatch_pattern *pat = pat_new("", 0);
	struct textmatch m;
	(void)state;

	assert_true(textmatch_pattern_is_empty(pat));
	textmatch_init(&m, pat);
	assert_true(textmatch_finish(&m));
	assert_true(textmatch_contains(pat, STR("anything")));
	textmatch_pattern_free(&pat);
	/* a needle of one invalid byte is not empty */
	pat = pat_new("\x80", 1);
	assert_false(textmatch_pattern_is_empty(pat));
	textmatch_pattern_free(&pat);
}

static void test_unicode_fold(void **state)
{
	(void)state;
	/* Latin-1 and Latin Extended */
	assert_true(M("\xc3\xa4pfel", "\xc3\x84PFEL")); /* äpfel ÄPFEL */
	assert_true(M("\xc3\x84PFEL", "gr\xc3\xbcne \xc3\xa4pfel"));
	/* Greek: final sigma, small sigma and capital sigma meet */
	assert_true(M("\xcf\x82", "\xce\xa3"));
	assert_true(M("\xcf\x83", "\xcf\x82"));
	assert_true(M("\xce\xbf\xce\xb4\xcf\x8c\xcf\x82",
		      "\xce\x9f\xce\x94\xce\x8c\xce\xa3"));
	/* Cyrillic */
	assert_true(M("\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82",
		      "\xd0\x9f\xd0\xa0\xd0\x98\xd0\x92\xd0\x95\xd0\xa2"));
	/* long s and Kelvin sign fold to ASCII letters */
	assert_true(M("s", "\xc5\xbf"));
	assert_true(M("\xe2\x84\xaa", "k"));
	/* 4-byte sequences: Deseret capital/small letter long I */
	assert_true(M("\xf0\x90\x90\x80", "x\xf0\x90\x90\xa8y"));
	/* different letters stay different */
	assert_false(M("\xc3\xa4", "a"));
	assert_false(M("\xe2\x82\xac", "\xe2\x82\xad"));
	assert_int_equal(textmatch_fold('Q'), 'q');
	assert_int_equal(textmatch_fold(0xc4), 0xe4);
	assert_int_equal(textmatch_fold(0x3a3), textmatch_fold(0x3c2));
}

static void test_invalid_utf8(void **state)
{
	(void)state;
	/* invalid bytes match themselves only */
	assert_true(M("\xff", "a\xff"
			      "b"));
	assert_false(M("\xff", "a\xc3\xbf"
			       "b")); /* U+00FF is not 0xFF */
	assert_true(M("\x80", "a\x80"));
	assert_false(M("\x80", "\xc3\x80")); /* 0x80 inside a valid char */
	/* a truncated sequence is its bytes; the next byte starts anew */
	assert_true(M("\xe2\x82"
		      "A",
		      "x\xe2\x82"
		      "a"));
	assert_true(M("A", "\xe2\x82"
			   "a"));
	assert_true(M("\xe2\x82\xac", "\xe2\xe2\x82\xac"));
	/* a truncated sequence at the end of the text, after finish */
	assert_true(M("\xe2", "abc\xe2"));
	assert_false(M("\xe2", "abc\xe2\x82\xac"));
	/* overlong '/' and an encoded surrogate are bytes, not chars */
	assert_false(M("/", "\xc0\xaf"));
	assert_true(M("\xc0\xaf", "x\xc0\xaf"));
	assert_true(M("\xed\xa0\x80", "\xed\xa0\x80"));
	assert_false(M("\xed\xa0", "\xed\x9f\xbf"));
	/* above U+10FFFF */
	assert_true(M("\xf4\x90\x80\x80", "\xf4\x90\x80\x80"));
	assert_false(M("\xf4\x8f", "\xf4\x8f\xbf\xbf"));
	/* case folding still works around invalid bytes */
	assert_true(M("\xfe"
		      "ABC",
		      "\xfe"
		      "abc"));
}

/* Naive reference: ASCII-only case-insensitive substring. */
static bool naive(const char *n, size_t nl, const char *t, size_t tl)
{
	if (nl == 0)
		return true;
	for (size_t i = 0; i + nl <= tl; i++) {
		size_t k = 0;
		while (k < nl && (t[i + k] | 0x20) == (n[k] | 0x20))
			k++;
		if (k == nl)
			return true;
	}
	return false;
}

static void test_random_against_naive(void **state)
{
	uint32_t rng = 12345;
	char needle[8], text[40];
	(void)state;

	for (int round = 0; round < 3000; round++) {
		size_t nl = 0, tl = 0;
		rng = rng * 1103515245 + 12345;
		nl = 1 + (rng >> 16) % 6;
		rng = rng * 1103515245 + 12345;
		tl = (rng >> 16) % sizeof(text);
		for (size_t i = 0; i < nl + tl; i++) {
			rng = rng * 1103515245 + 12345;
			/* a, b, A, B: small alphabet, many near misses */
			char c = (char)("abAB"[(rng >> 16) % 4]);
			if (i < nl)
				needle[i] = c;
			else
				text[i - nl] = c;
		}
		struct textmatch_pattern *pat = pat_new(needle, nl);
		/* feed in chunks of 1..3 bytes */
		struct textmatch m;
		textmatch_init(&m, pat);
		for (size_t pos = 0; pos < tl;) {
			size_t n = 1 + (pos * 7 + (size_t)round) % 3;
			if (n > tl - pos)
				n = tl - pos;
			textmatch_feed(&m, text + pos, n);
			pos += n;
		}
		assert_int_equal(textmatch_finish(&m),
				 naive(needle, nl, text, tl));
		textmatch_pattern_free(&pat);
	}
}

static void test_limit(void **state)
{
	char big[TEXTMATCH_MAX_NEEDLE + 1];
	struct textmatch_pattern *pat = NULL;
	const char *error = NULL;
	(void)state;

	memset(big, 'x', sizeof(big));
	assert_int_equal(
	    textmatch_pattern_new(str_from(big, sizeof(big) - 1), &pat, &error),
	    0);
	assert_true(str_eq(textmatch_pattern_needle(pat),
			   str_from(big, sizeof(big) - 1)));
	textmatch_pattern_free(&pat);
	assert_int_equal(
	    textmatch_pattern_new(str_from(big, sizeof(big)), &pat, &error),
	    -1);
	assert_null(pat);
	assert_string_equal(error, "Search string too long");
}

static void test_feed_after_match(void **state)
{
	struct textmatch_pattern *pat = pat_new("ab", 2);
	struct textmatch m;
	(void)state;

	textmatch_init(&m, pat);
	assert_false(textmatch_feed(&m, "xa", 2));
	assert_true(textmatch_feed(&m, "b", 1));
	assert_true(textmatch_feed(&m, "zzz", 3));
	assert_true(textmatch_finish(&m));
	/* init resets for the next text */
	textmatch_init(&m, pat);
	assert_false(textmatch_feed(&m, "a", 1));
	textmatch_init(&m, pat);
	assert_false(textmatch_feed(&m, "b", 1));
	assert_false(textmatch_finish(&m));
	textmatch_pattern_free(&pat);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ascii),
	    cmocka_unit_test(test_empty),
	    cmocka_unit_test(test_unicode_fold),
	    cmocka_unit_test(test_invalid_utf8),
	    cmocka_unit_test(test_random_against_naive),
	    cmocka_unit_test(test_limit),
	    cmocka_unit_test(test_feed_after_match),
	};
	return cmocka_run_group_tests_name("textmatch", tests, NULL, NULL);
}
