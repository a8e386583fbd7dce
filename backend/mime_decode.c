/*
 * Text for SEARCH: RFC 2047 header decoding, transfer-encoding and charset
 * decoding of bodies (streaming, bounded), and RFC 5322 dates.
 *
 * Everything is converted to UTF-8. Bytes that are not valid in their
 * charset become U+FFFD, so the searcher can compare without further
 * checks; an unknown charset is read as UTF-8 (many "unknown-8bit" mails
 * are UTF-8 in practice, and the rest still yields its ASCII words).
 */
#include "backend/mime_private.h"

#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

static const uint8_t replacement[3] = {0xef, 0xbf, 0xbd}; /* U+FFFD */

/* ---- charsets ---------------------------------------------------------- */

/* Converts a stream of bytes in one charset to UTF-8. */
struct conv {
	iconv_t cd;       /* (iconv_t)-1: input is taken as UTF-8 */
	uint8_t pend[16]; /* an incomplete sequence left by the last chunk */
	size_t pend_len;
};

static bool charset_is_utf8(struct str cs)
{
	return cs.p == NULL || cs.len == 0 || str_eq_nocase(cs, STR("utf-8")) ||
	       str_eq_nocase(cs, STR("utf8")) ||
	       str_eq_nocase(cs, STR("us-ascii")) ||
	       str_eq_nocase(cs, STR("ascii"));
}

static void conv_init(struct conv *c, struct str charset)
{
	char name[64];
	c->cd = (iconv_t)-1;
	c->pend_len = 0;
	/* RFC 2231 "charset*lang" */
	ptrdiff_t star = str_index(charset, '*');
	if (star >= 0)
		charset.len = (size_t)star;
	if (charset_is_utf8(charset) || !str_copy(charset, name, sizeof(name)))
		return;
	c->cd = iconv_open("UTF-8", name);
}

static void conv_deinit(struct conv *c)
{
	if (c->cd != (iconv_t)-1)
		iconv_close(c->cd);
	c->cd = (iconv_t)-1;
}

/* Length of the valid UTF-8 sequence at p (1..4), 0 when invalid, -1 when
 * it may be valid but is cut at len. */
static int utf8_seq(const uint8_t *p, size_t len)
{
	uint8_t c = p[0];
	int n;
	uint8_t lo = 0x80, hi = 0xbf;
	if (c < 0x80)
		return 1;
	if (c < 0xc2)
		return 0;
	if (c < 0xe0)
		n = 2;
	else if (c < 0xf0) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c < 0xf5) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	for (int i = 1; i < n; i++) {
		if ((size_t)i >= len)
			return -1;
		uint8_t lo_i = i == 1 ? lo : 0x80, hi_i = i == 1 ? hi : 0xbf;
		if (p[i] < lo_i || p[i] > hi_i)
			return 0;
	}
	return n;
}

/* Appends valid UTF-8 from p; a cut sequence at the end is returned in
 * *rest (when not final). */
static int utf8_append(const uint8_t *p, size_t len, bool final,
		       struct buf *out, size_t *rest)
{
	size_t i = 0, start = 0;
	*rest = 0;
	while (i < len) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		int n = utf8_seq(p + i, len - i);
		if (n > 0) {
			i += (size_t)n;
			continue;
		}
		if (buf_append(out, p + start, i - start) < 0)
			return -1;
		if (n < 0 && !final) {
			*rest = len - i;
			return 0;
		}
		if (buf_append(out, replacement, sizeof(replacement)) < 0)
			return -1;
		i++;
		start = i;
	}
	return buf_append(out, p + start, i - start);
}

int mime_utf8_sanitize(const uint8_t *in, size_t len, struct buf *out)
{
	size_t rest;
	return utf8_append(in, len, true, out, &rest);
}

/* Converts p (pend already in front) to UTF-8; keeps a cut sequence. */
static int conv_run(struct conv *c, const uint8_t *p, size_t len, bool final,
		    struct buf *out)
{
	size_t rest = 0;
	if (c->cd == (iconv_t)-1) {
		if (utf8_append(p, len, final, out, &rest) < 0)
			return -1;
	} else {
		char *inp = (char *)(uintptr_t)p;
		size_t inleft = len;
		char obuf[1024];
		while (inleft > 0) {
			char *op = obuf;
			size_t oleft = sizeof(obuf);
			size_t r = iconv(c->cd, &inp, &inleft, &op, &oleft);
			int err = errno;
			if (buf_append(out, obuf, sizeof(obuf) - oleft) < 0)
				return -1;
			if (r != (size_t)-1)
				break;
			if (err == E2BIG)
				continue;
			if (err == EINVAL && !final &&
			    inleft < sizeof(c->pend)) {
				rest = inleft;
				break;
			}
			/* invalid or cut at the end: one U+FFFD per byte */
			if (buf_append(out, replacement, sizeof(replacement)) <
			    0)
				return -1;
			inp++;
			inleft--;
			iconv(c->cd, NULL, NULL, NULL, NULL);
		}
	}
	if (rest > sizeof(c->pend))
		rest = sizeof(c->pend);
	memcpy(c->pend, p + len - rest, rest);
	c->pend_len = rest;
	return 0;
}

/* Feeds bytes; work must hold sizeof(pend) + len bytes. */
static int conv_feed(struct conv *c, const uint8_t *in, size_t len, bool final,
		     uint8_t *work, struct buf *out)
{
	memcpy(work, c->pend, c->pend_len);
	if (len > 0)
		memcpy(work + c->pend_len, in, len);
	size_t total = c->pend_len + len;
	c->pend_len = 0;
	return conv_run(c, work, total, final, out);
}

int mime_charset_to_utf8(struct str charset, const uint8_t *in, size_t len,
			 struct buf *out)
{
	struct conv c;
	conv_init(&c, charset);
	uint8_t *work = xmalloc(len + sizeof(c.pend) + 1);
	int ret = conv_feed(&c, in, len, true, work, out);
	free(work);
	conv_deinit(&c);
	return ret;
}

/* ---- RFC 2047 ---------------------------------------------------------- */

static int hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int b64val(uint8_t c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decodes the text of one encoded-word into out (bytes, not converted). */
static int decode_word_text(char enc, struct str t, struct buf *out)
{
	if (enc == 'Q' || enc == 'q') {
		for (size_t i = 0; i < t.len; i++) {
			uint8_t c = (uint8_t)t.p[i];
			if (c == '_')
				c = ' ';
			else if (c == '=' && i + 2 < t.len + 0 &&
				 hexval((uint8_t)t.p[i + 1]) >= 0 &&
				 hexval((uint8_t)t.p[i + 2]) >= 0) {
				c = (uint8_t)(hexval((uint8_t)t.p[i + 1]) * 16 +
					      hexval((uint8_t)t.p[i + 2]));
				i += 2;
			}
			if (buf_append_byte(out, c) < 0)
				return -1;
		}
		return 0;
	}
	unsigned int acc = 0, bits = 0;
	for (size_t i = 0; i < t.len; i++) {
		int v = b64val((uint8_t)t.p[i]);
		if (v < 0)
			continue;
		acc = (acc << 6) | (unsigned int)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (buf_append_byte(out, (uint8_t)(acc >> bits)) < 0)
				return -1;
			acc &= (1u << bits) - 1;
		}
	}
	return 0;
}

/* Parses "=?charset?e?text?=" at s[pos]; returns its length or 0. */
static size_t parse_encoded_word(struct str s, size_t pos, struct str *cs_r,
				 char *enc_r, struct str *text_r)
{
	if (pos + 8 > s.len || s.p[pos] != '=' || s.p[pos + 1] != '?')
		return 0;
	size_t i = pos + 2, cs_start = i;
	while (i < s.len && s.p[i] != '?' && !mime_is_wsp((uint8_t)s.p[i]))
		i++;
	if (i + 3 >= s.len || s.p[i] != '?' || i == cs_start)
		return 0;
	*cs_r = str_from(s.p + cs_start, i - cs_start);
	char enc = s.p[i + 1];
	if (s.p[i + 2] != '?' ||
	    (enc != 'B' && enc != 'b' && enc != 'Q' && enc != 'q'))
		return 0;
	i += 3;
	size_t t_start = i;
	while (i + 1 < s.len && !(s.p[i] == '?' && s.p[i + 1] == '=')) {
		if (mime_is_wsp((uint8_t)s.p[i]))
			return 0;
		i++;
	}
	if (i + 1 >= s.len)
		return 0;
	*enc_r = enc;
	*text_r = str_from(s.p + t_start, i - t_start);
	return i + 2 - pos;
}

int mime_header_decode(struct str raw, struct buf *out)
{
	/* unfold first: CR and LF go, the blanks after them stay */
	char *u = xmalloc(raw.len + 1);
	size_t ulen = 0;
	for (size_t i = 0; i < raw.len; i++)
		if (raw.p[i] != '\r' && raw.p[i] != '\n')
			u[ulen++] = raw.p[i];
	struct str s = str_from(u, ulen);
	/* decoded bytes of adjacent words in one charset are converted
	 * together: a character may be split between two words */
	struct buf *pending = buf_new(64, raw.len + 16);
	struct str pending_cs = STR_NULL;
	size_t pos = 0, plain_start = 0;
	int ret = 0;
	bool last_was_word = false;

	while (ret == 0 && pos < s.len) {
		struct str cs, text;
		char enc;
		size_t n = s.p[pos] == '='
			       ? parse_encoded_word(s, pos, &cs, &enc, &text)
			       : 0;
		if (n == 0) {
			pos++;
			continue;
		}
		/* the text before the word: dropped when it is only blanks
		 * between two words (RFC 2047 6.2), else written */
		bool only_blanks = last_was_word;
		for (size_t i = plain_start; only_blanks && i < pos; i++)
			only_blanks = mime_is_wsp((uint8_t)s.p[i]);
		if (!only_blanks) {
			if (pending->len > 0) {
				ret = mime_charset_to_utf8(pending_cs,
							   pending->data,
							   pending->len, out);
				buf_reset(pending);
			}
			if (ret == 0)
				ret = mime_utf8_sanitize(
				    (const uint8_t *)s.p + plain_start,
				    pos - plain_start, out);
		}
		if (ret == 0 && pending->len > 0 &&
		    !str_eq_nocase(cs, pending_cs)) {
			ret = mime_charset_to_utf8(pending_cs, pending->data,
						   pending->len, out);
			buf_reset(pending);
		}
		pending_cs = cs;
		if (ret == 0 && decode_word_text(enc, text, pending) < 0)
			ret = -1;
		pos += n;
		plain_start = pos;
		last_was_word = true;
	}
	if (ret == 0 && pending->len > 0)
		ret = mime_charset_to_utf8(pending_cs, pending->data,
					   pending->len, out);
	if (ret == 0)
		ret = mime_utf8_sanitize((const uint8_t *)s.p + plain_start,
					 s.len - plain_start, out);
	buf_free(&pending);
	free(u);
	return ret;
}

/* ---- bodies ------------------------------------------------------------ */

enum cte {
	CTE_NONE = 0, /* 7bit, 8bit, binary, unknown */
	CTE_QP,
	CTE_BASE64,
};

#define DECODE_CHUNK 4096

struct mime_decoder {
	enum cte cte;
	struct conv conv;
	mime_decoder_cb *cb;
	void *context;
	/* quoted-printable: 0 text, 1 after '=', 2 after '=' + hex, 3 after
	 * "=\r" */
	int qp_state;
	uint8_t qp_hex;
	/* base64 */
	unsigned int b64_acc, b64_bits;
	uint8_t dec[DECODE_CHUNK];
	size_t dec_len;
	uint8_t work[DECODE_CHUNK + 16];
	struct buf *out;
	bool raw; /* no charset stage: transfer decoding only */
	bool stopped;
};

struct mime_decoder *mime_decoder_new(struct str encoding, struct str charset,
				      mime_decoder_cb *cb, void *context)
{
	struct mime_decoder *d = xcalloc(1, sizeof(*d));
	if (str_eq_nocase(encoding, STR("quoted-printable")))
		d->cte = CTE_QP;
	else if (str_eq_nocase(encoding, STR("base64")))
		d->cte = CTE_BASE64;
	conv_init(&d->conv, charset);
	d->cb = cb;
	d->context = context;
	/* 3 bytes of U+FFFD per input byte at worst */
	d->out = buf_new(DECODE_CHUNK * 4, DECODE_CHUNK * 4 + 64);
	return d;
}

struct mime_decoder *mime_decoder_new_part(const struct mime_part *part,
					   mime_decoder_cb *cb, void *context)
{
	const struct mime_fields *f = &part->fields;
	struct mime_decoder *d = mime_decoder_new(
	    f->encoding,
	    mime_param_get(f->params, f->param_count, STR("charset")), cb,
	    context);
	/* only text has a charset; other bodies come out as decoded bytes */
	d->raw = !mime_part_searchable(part);
	return d;
}

static int flush_decoded(struct mime_decoder *d, bool final)
{
	if (d->stopped)
		return -1;
	if (d->dec_len == 0 && !final)
		return 0;
	if (d->raw) {
		size_t n = d->dec_len;
		d->dec_len = 0;
		if (n > 0 && d->cb(d->dec, n, d->context) < 0) {
			d->stopped = true;
			return -1;
		}
		return 0;
	}
	buf_reset(d->out);
	if (conv_feed(&d->conv, d->dec, d->dec_len, final, d->work, d->out) < 0)
		return -1;
	d->dec_len = 0;
	if (d->out->len > 0 &&
	    d->cb(d->out->data, d->out->len, d->context) < 0) {
		d->stopped = true;
		return -1;
	}
	return 0;
}

static int put(struct mime_decoder *d, uint8_t c)
{
	if (d->dec_len == sizeof(d->dec) && flush_decoded(d, false) < 0)
		return -1;
	d->dec[d->dec_len++] = c;
	return 0;
}

int mime_decoder_feed(struct mime_decoder *d, const void *data, size_t len)
{
	const uint8_t *p = data;
	if (d->stopped)
		return -1;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = p[i];
		int r = 0;
		switch (d->cte) {
		case CTE_NONE:
			r = put(d, c);
			break;
		case CTE_BASE64: {
			int v = b64val(c);
			if (v < 0)
				break; /* line breaks, padding, junk */
			d->b64_acc = (d->b64_acc << 6) | (unsigned int)v;
			d->b64_bits += 6;
			if (d->b64_bits >= 8) {
				d->b64_bits -= 8;
				r = put(d,
					(uint8_t)(d->b64_acc >> d->b64_bits));
				d->b64_acc &= (1u << d->b64_bits) - 1;
			}
			break;
		}
		case CTE_QP:
			if (d->qp_state == 0) {
				if (c == '=')
					d->qp_state = 1;
				else
					r = put(d, c);
			} else if (d->qp_state == 1) {
				if (c == '\n') {
					d->qp_state = 0; /* soft break */
				} else if (c == '\r') {
					d->qp_state = 3;
				} else if (hexval(c) >= 0) {
					d->qp_hex = c;
					d->qp_state = 2;
				} else {
					/* not an escape: keep it as is */
					d->qp_state = 0;
					r = put(d, '=');
					if (r == 0 && c != '=')
						r = put(d, c);
					else if (c == '=')
						d->qp_state = 1;
				}
			} else if (d->qp_state == 2) {
				d->qp_state = 0;
				if (hexval(c) >= 0) {
					r = put(d, (uint8_t)(hexval(d->qp_hex) *
								 16 +
							     hexval(c)));
				} else {
					r = put(d, '=');
					if (r == 0)
						r = put(d, d->qp_hex);
					if (r == 0)
						r = put(d, c);
				}
			} else {
				d->qp_state = 0;
				if (c != '\n')
					r = put(d, c); /* "=\r" + x */
			}
			break;
		}
		if (r < 0)
			return -1;
	}
	return flush_decoded(d, false);
}

int mime_decoder_finish(struct mime_decoder *d)
{
	if (d->cte == CTE_QP && d->qp_state == 2) {
		if (put(d, '=') < 0 || put(d, d->qp_hex) < 0)
			return -1;
	} else if (d->cte == CTE_QP && d->qp_state == 1) {
		if (put(d, '=') < 0)
			return -1;
	}
	d->qp_state = 0;
	return flush_decoded(d, true);
}

void mime_decoder_free(struct mime_decoder **d)
{
	if (*d == NULL)
		return;
	conv_deinit(&(*d)->conv);
	buf_free(&(*d)->out);
	free(*d);
	*d = NULL;
}

bool mime_part_searchable(const struct mime_part *part)
{
	if ((part->flags & (MIME_PART_MULTIPART | MIME_PART_MESSAGE)) != 0)
		return false;
	const struct mime_fields *f = &part->fields;
	if (f->type.p == NULL)
		return !part->default_rfc822 ||
		       (part->flags & MIME_PART_TOO_DEEP) != 0;
	return str_eq_nocase(f->type, STR("text")) ||
	       str_eq_nocase(f->type, STR("message"));
}

/* ---- dates ------------------------------------------------------------- */

static bool read_number(struct str s, size_t *pos, unsigned int maxdigits,
			unsigned int *value_r, unsigned int *digits_r)
{
	size_t i = *pos;
	unsigned int v = 0, n = 0;
	while (i < s.len && s.p[i] >= '0' && s.p[i] <= '9' && n < maxdigits) {
		v = v * 10 + (unsigned int)(s.p[i] - '0');
		i++;
		n++;
	}
	if (n == 0 || (i < s.len && s.p[i] >= '0' && s.p[i] <= '9'))
		return false;
	*pos = i;
	*value_r = v;
	*digits_r = n;
	return true;
}

static struct str read_alpha(struct str s, size_t *pos)
{
	size_t i = *pos, start = i;
	while (i < s.len && ((s.p[i] >= 'a' && s.p[i] <= 'z') ||
			     (s.p[i] >= 'A' && s.p[i] <= 'Z')))
		i++;
	*pos = i;
	return str_from(s.p + start, i - start);
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int64_t y, unsigned int m, unsigned int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int mime_date_parse(struct str s, int64_t *unix_r, int *tz_offset_minutes_r)
{
	static const char months[12][4] = {"jan", "feb", "mar", "apr",
					   "may", "jun", "jul", "aug",
					   "sep", "oct", "nov", "dec"};
	static const struct {
		const char *name;
		int minutes;
	} zones[] = {
	    {"ut", 0},        {"utc", 0},       {"gmt", 0},
	    {"z", 0},         {"est", -5 * 60}, {"edt", -4 * 60},
	    {"cst", -6 * 60}, {"cdt", -5 * 60}, {"mst", -7 * 60},
	    {"mdt", -6 * 60}, {"pst", -8 * 60}, {"pdt", -7 * 60},
	};
	size_t pos = 0;
	unsigned int day, year, hour, min, sec = 0, digits;

	if (s.p == NULL)
		return -1;
	mime_skip_cfws(s, &pos);
	size_t save = pos;
	struct str word = read_alpha(s, &pos);
	if (word.len > 0) {
		/* a weekday, with or without its comma */
		mime_skip_cfws(s, &pos);
		if (pos < s.len && s.p[pos] == ',')
			pos++;
	} else {
		pos = save;
	}
	mime_skip_cfws(s, &pos);
	if (!read_number(s, &pos, 2, &day, &digits) || day < 1 || day > 31)
		return -1;
	mime_skip_cfws(s, &pos);
	if (pos < s.len && s.p[pos] == '-')
		pos++; /* "05-Jan-2026" */
	word = read_alpha(s, &pos);
	int month = -1;
	for (int i = 0; i < 12 && word.len >= 3; i++)
		if (str_has_prefix_nocase(word, str_from(months[i], 3)))
			month = i + 1;
	if (month < 0)
		return -1;
	if (pos < s.len && s.p[pos] == '-')
		pos++;
	mime_skip_cfws(s, &pos);
	if (!read_number(s, &pos, 4, &year, &digits))
		return -1;
	if (digits == 2)
		year += year < 50 ? 2000 : 1900; /* RFC 5322 4.3 */
	else if (digits == 3)
		year += 1900;
	mime_skip_cfws(s, &pos);
	if (!read_number(s, &pos, 2, &hour, &digits) || pos >= s.len ||
	    s.p[pos] != ':')
		return -1;
	pos++;
	if (!read_number(s, &pos, 2, &min, &digits))
		return -1;
	if (pos < s.len && s.p[pos] == ':') {
		pos++;
		if (!read_number(s, &pos, 2, &sec, &digits))
			return -1;
	}
	if (hour > 23 || min > 59 || sec > 60)
		return -1;
	if (day > 28) {
		static const unsigned int mdays[12] = {31, 29, 31, 30, 31, 30,
						       31, 31, 30, 31, 30, 31};
		bool leap =
		    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
		if (day > mdays[month - 1] ||
		    (month == 2 && day == 29 && !leap))
			return -1;
	}
	mime_skip_cfws(s, &pos);
	int tz = 0;
	if (pos < s.len && (s.p[pos] == '+' || s.p[pos] == '-')) {
		int sign = s.p[pos] == '-' ? -1 : 1;
		pos++;
		unsigned int hhmm;
		if (!read_number(s, &pos, 4, &hhmm, &digits) || digits != 4 ||
		    hhmm % 100 > 59)
			return -1;
		tz = sign * (int)(hhmm / 100 * 60 + hhmm % 100);
	} else {
		word = read_alpha(s, &pos);
		for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++)
			if (str_eq_nocase(word, str_cstr(zones[i].name)))
				tz = zones[i].minutes;
		/* military and unknown zones: RFC 5322 says treat as
		 * +0000 (no information) */
	}
	int64_t t = days_from_civil(year, (unsigned int)month, day) * 86400 +
		    hour * 3600 + min * 60 + sec;
	*unix_r = t - (int64_t)tz * 60;
	*tz_offset_minutes_r = tz;
	return 1;
}
