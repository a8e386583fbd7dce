#include "http_parse.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "xmalloc.h"

enum http_parser_state {
	HTTP_STATE_FIRST_LINE = 0, /* reading the request or status line */
	HTTP_STATE_HEADERS,        /* reading header lines */
	HTTP_STATE_BODY,           /* reading Content-Length bytes */
	HTTP_STATE_DONE,           /* a message was returned */
	HTTP_STATE_ERROR,          /* a final error was returned */
};

/* Slices are kept as offsets while the buffer may still move. */
struct http_span {
	size_t off, len;
};

struct http_header_span {
	struct http_span name, value;
};

struct http_parser {
	enum http_parse_mode mode;
	struct http_parser_limits limits;
	enum http_parser_state state;
	struct buf *data;      /* the message so far */
	uint64_t msg_offset;   /* stream offset of data[0] */
	size_t line_start;     /* offset in data of the current line */
	struct http_span method, target, reason;
	unsigned int status;
	unsigned int version_minor;
	struct http_header_span *hspans;
	struct http_header *headers;
	size_t header_count;
	bool has_content_length;
	uint64_t content_length;
	size_t body_start;
	struct http_parse_error error;
};

struct http_parser *http_parser_new(enum http_parse_mode mode,
				    const struct http_parser_limits *limits)
{
	struct http_parser *p = xcalloc(1, sizeof(*p));
	size_t nh = limits->max_headers > 0 ? limits->max_headers : 1;
	size_t lines = (size_t)limits->max_headers + 2;
	size_t max;

	p->mode = mode;
	p->limits = *limits;
	/* every line is checked against max_line_len and the body against
	 * max_body, so this bound is never reached; it only backs them up */
	if (limits->max_line_len > (SIZE_MAX / 2) / lines ||
	    limits->max_body > SIZE_MAX / 2)
		max = SIZE_MAX / 2;
	else
		max = limits->max_line_len * lines + limits->max_body;
	p->data = buf_new(512, max);
	p->hspans = xcalloc(nh, sizeof(*p->hspans));
	p->headers = xcalloc(nh, sizeof(*p->headers));
	return p;
}

void http_parser_free(struct http_parser **parser)
{
	if (*parser == NULL)
		return;
	buf_free(&(*parser)->data);
	free((*parser)->hspans);
	free((*parser)->headers);
	free(*parser);
	*parser = NULL;
}

/* Starts the next message; the stream offset goes on. */
static void next_message(struct http_parser *p)
{
	p->msg_offset += p->data->len;
	buf_reset(p->data);
	p->state = HTTP_STATE_FIRST_LINE;
	p->line_start = 0;
	p->method = p->target = p->reason = (struct http_span){ 0, 0 };
	p->status = 0;
	p->version_minor = 0;
	p->header_count = 0;
	p->has_content_length = false;
	p->content_length = 0;
	p->body_start = 0;
	p->error = (struct http_parse_error){ 0 };
}

void http_parser_reset(struct http_parser *p)
{
	next_message(p);
	p->msg_offset = 0;
}

static unsigned int error_status(enum http_parse_error_kind kind,
				 bool first_line)
{
	switch (kind) {
	case HTTP_PARSE_ERR_LINE_TOO_LONG:
		return first_line ? 414 : 431;
	case HTTP_PARSE_ERR_TOO_MANY_HEADERS:
		return 431;
	case HTTP_PARSE_ERR_BODY_TOO_LARGE:
		return 413;
	case HTTP_PARSE_ERR_LENGTH_REQUIRED:
		return 411;
	case HTTP_PARSE_ERR_BAD_VERSION:
		return 505;
	default:
		return 400;
	}
}

/* Records a final error at data offset off. Returns ERROR. */
static enum http_parse_result fail(struct http_parser *p,
				   enum http_parse_error_kind kind,
				   const char *msg, size_t off)
{
	p->error.kind = kind;
	p->error.status = error_status(kind, p->state == HTTP_STATE_FIRST_LINE);
	p->error.msg = msg;
	p->error.offset = p->msg_offset + off;
	p->state = HTTP_STATE_ERROR;
	return HTTP_PARSE_ERROR;
}

static bool is_tchar(uint8_t c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static const uint8_t *at(const struct http_parser *p, size_t off)
{
	return p->data->data + off;
}

static struct str span_str(const struct http_parser *p, struct http_span s)
{
	return str_from((const char *)at(p, s.off), s.len);
}

/* "HTTP/1.0" or "HTTP/1.1" at off (8 bytes available). 1 ok, 0 another
 * HTTP/x.y, -1 not a version. */
static int parse_version(struct http_parser *p, size_t off, size_t len)
{
	const uint8_t *v = at(p, off);

	if (len != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' ||
	    v[6] != '.' || v[7] < '0' || v[7] > '9')
		return -1;
	if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
		return 0;
	p->version_minor = (unsigned int)(v[7] - '0');
	return 1;
}

static enum http_parse_result parse_request_line(struct http_parser *p,
						 size_t off, size_t len)
{
	const uint8_t *l = at(p, off);
	size_t i = 0;

	while (i < len && is_tchar(l[i]))
		i++;
	if (i == 0 || i > HTTP_METHOD_MAX_LEN || i == len || l[i] != ' ')
		return fail(p, HTTP_PARSE_ERR_BAD_FIRST_LINE, "bad request method",
			    off + i);
	p->method = (struct http_span){ off, i };
	size_t t = ++i;
	while (i < len && l[i] > ' ' && l[i] < 0x7f)
		i++;
	if (i == t || i == len || l[i] != ' ')
		return fail(p, HTTP_PARSE_ERR_BAD_FIRST_LINE, "bad request target",
			    off + i);
	p->target = (struct http_span){ off + t, i - t };
	i++;
	int v = parse_version(p, off + i, len - i);
	if (v < 0)
		return fail(p, HTTP_PARSE_ERR_BAD_FIRST_LINE, "bad HTTP version",
			    off + i);
	if (v == 0)
		return fail(p, HTTP_PARSE_ERR_BAD_VERSION,
			    "HTTP version not supported", off + i);
	return HTTP_PARSE_MORE;
}

static enum http_parse_result parse_status_line(struct http_parser *p,
						size_t off, size_t len)
{
	const uint8_t *l = at(p, off);

	if (len < 12 || l[8] != ' ')
		return fail(p, HTTP_PARSE_ERR_BAD_FIRST_LINE, "bad status line",
			    off + (len < 8 ? len : 8));
	int v = parse_version(p, off, 8);
	if (v < 0)
		return fail(p, HTTP_PARSE_ERR_BAD_FIRST_LINE, "bad HTTP version",
			    off);
	if (v == 0)
		return fail(p, HTTP_PARSE_ERR_BAD_VERSION,
			    "HTTP version not supported", off);
	p->status = 0;
	for (size_t i = 9; i < 12; i++) {
		if (l[i] < '0' || l[i] > '9')
			return fail(p, HTTP_PARSE_ERR_BAD_FIRST_LINE,
				    "bad status code", off + i);
		p->status = p->status * 10 + (unsigned int)(l[i] - '0');
	}
	if (p->status < 100)
		return fail(p, HTTP_PARSE_ERR_BAD_FIRST_LINE, "bad status code",
			    off + 9);
	if (len > 12 && l[12] != ' ')
		return fail(p, HTTP_PARSE_ERR_BAD_FIRST_LINE, "bad status line",
			    off + 12);
	if (len > 12)
		p->reason = (struct http_span){ off + 13, len - 13 };
	return HTTP_PARSE_MORE;
}

static enum http_parse_result parse_header(struct http_parser *p, size_t off,
					   size_t len)
{
	const uint8_t *l = at(p, off);
	size_t i = 0;

	if (p->header_count >= p->limits.max_headers)
		return fail(p, HTTP_PARSE_ERR_TOO_MANY_HEADERS,
			    "too many header lines", off);
	if (l[0] == ' ' || l[0] == '\t')
		return fail(p, HTTP_PARSE_ERR_BAD_HEADER,
			    "folded header lines are not accepted", off);
	while (i < len && is_tchar(l[i]))
		i++;
	if (i == 0 || i == len || l[i] != ':')
		return fail(p, HTTP_PARSE_ERR_BAD_HEADER, "bad header name",
			    off + i);
	size_t vs = i + 1, ve = len;
	while (vs < ve && (l[vs] == ' ' || l[vs] == '\t'))
		vs++;
	while (ve > vs && (l[ve - 1] == ' ' || l[ve - 1] == '\t'))
		ve--;
	struct http_header_span *h = &p->hspans[p->header_count++];
	h->name = (struct http_span){ off, i };
	h->value = (struct http_span){ off + vs, ve - vs };

	struct str name = span_str(p, h->name), value = span_str(p, h->value);
	if (str_eq_nocase(name, STR("Transfer-Encoding")))
		return fail(p, HTTP_PARSE_ERR_LENGTH_REQUIRED,
			    "Transfer-Encoding is not supported: send Content-Length",
			    off);
	if (str_eq_nocase(name, STR("Content-Length"))) {
		uint64_t n;
		if (p->has_content_length)
			return fail(p, HTTP_PARSE_ERR_BAD_CONTENT_LENGTH,
				    "repeated Content-Length", off);
		if (!str_to_u64(value, UINT64_MAX, &n))
			return fail(p, HTTP_PARSE_ERR_BAD_CONTENT_LENGTH,
				    "bad Content-Length", off + vs);
		if (n > p->limits.max_body)
			return fail(p, HTTP_PARSE_ERR_BODY_TOO_LARGE,
				    "body too large", off + vs);
		p->has_content_length = true;
		p->content_length = n;
	}
	return HTTP_PARSE_MORE;
}

/* The empty line: decides about the body. Returns DONE (no body), MORE
 * (read the body) or ERROR. */
static enum http_parse_result end_of_headers(struct http_parser *p,
					     size_t off)
{
	if (p->mode == HTTP_PARSE_MODE_RESPONSE) {
		bool bodyless = p->status < 200 || p->status == 204 ||
				p->status == 304;
		if (bodyless)
			p->content_length = 0;
		else if (!p->has_content_length)
			return fail(p, HTTP_PARSE_ERR_LENGTH_REQUIRED,
				    "response without Content-Length", off);
	}
	p->body_start = p->data->len;
	if (p->content_length == 0)
		return HTTP_PARSE_DONE;
	p->state = HTTP_STATE_BODY;
	return HTTP_PARSE_MORE;
}

/* A complete line at line_start (its LF is the last byte of data). */
static enum http_parse_result handle_line(struct http_parser *p)
{
	size_t off = p->line_start;
	size_t len = p->data->len - off - 1; /* without the LF */
	const uint8_t *l = at(p, off);

	if (len > 0 && l[len - 1] == '\r')
		len--;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = l[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return fail(p, HTTP_PARSE_ERR_BAD_BYTE,
				    c == '\r' ? "stray CR" : "control byte in line",
				    off + i);
	}
	p->line_start = p->data->len;
	if (p->state == HTTP_STATE_FIRST_LINE) {
		enum http_parse_result r;
		if (len == 0)
			return fail(p, HTTP_PARSE_ERR_BAD_FIRST_LINE,
				    "empty first line", off);
		r = p->mode == HTTP_PARSE_MODE_REQUEST ?
			    parse_request_line(p, off, len) :
			    parse_status_line(p, off, len);
		if (r == HTTP_PARSE_MORE)
			p->state = HTTP_STATE_HEADERS;
		return r;
	}
	if (len == 0)
		return end_of_headers(p, off);
	return parse_header(p, off, len);
}

static void fill_message(struct http_parser *p, struct http_message *m)
{
	*m = (struct http_message){ 0 };
	m->method = span_str(p, p->method);
	m->target = span_str(p, p->target);
	m->status = p->status;
	m->reason = span_str(p, p->reason);
	m->version_minor = p->version_minor;
	for (size_t i = 0; i < p->header_count; i++) {
		p->headers[i].name = span_str(p, p->hspans[i].name);
		p->headers[i].value = span_str(p, p->hspans[i].value);
	}
	m->headers = p->headers;
	m->header_count = p->header_count;
	m->body = str_from((const char *)at(p, p->body_start),
			   (size_t)p->content_length);
	m->has_content_length = p->has_content_length;
	p->state = HTTP_STATE_DONE;
}

enum http_parse_result http_parser_feed(struct http_parser *p,
					const void *data, size_t size,
					size_t *consumed_r,
					struct http_message *msg_r,
					struct http_parse_error *error_r)
{
	const uint8_t *in = data;
	size_t pos = 0;
	enum http_parse_result r;

	*consumed_r = 0;
	if (p->state == HTTP_STATE_ERROR) {
		*error_r = p->error;
		return HTTP_PARSE_ERROR;
	}
	if (p->state == HTTP_STATE_DONE)
		next_message(p);
	while (pos < size) {
		if (p->state == HTTP_STATE_BODY) {
			uint64_t have = p->data->len - p->body_start;
			uint64_t need = p->content_length - have;
			size_t n = size - pos;
			if (n > need)
				n = (size_t)need;
			if (buf_append(p->data, in + pos, n) < 0)
				abort(); /* bounded by max_body: a bug */
			pos += n;
			if (n == need) {
				fill_message(p, msg_r);
				*consumed_r = pos;
				return HTTP_PARSE_DONE;
			}
			continue;
		}
		size_t cur = p->data->len - p->line_start;
		const uint8_t *lf = memchr(in + pos, '\n', size - pos);
		size_t n = lf != NULL ? (size_t)(lf - (in + pos)) + 1 : size - pos;
		if (n > p->limits.max_line_len - cur) {
			/* the byte at index max_line_len of the line */
			size_t ok = p->limits.max_line_len - cur;
			if (buf_append(p->data, in + pos, ok) < 0)
				abort();
			*consumed_r = pos + ok + 1;
			r = fail(p, HTTP_PARSE_ERR_LINE_TOO_LONG, "line too long",
				 p->line_start + p->limits.max_line_len);
			*error_r = p->error;
			return r;
		}
		if (buf_append(p->data, in + pos, n) < 0)
			abort(); /* bounded by the line limits: a bug */
		pos += n;
		if (lf == NULL)
			break;
		r = handle_line(p);
		if (r == HTTP_PARSE_ERROR) {
			*consumed_r = pos;
			*error_r = p->error;
			return r;
		}
		if (r == HTTP_PARSE_DONE) {
			fill_message(p, msg_r);
			*consumed_r = pos;
			return r;
		}
	}
	*consumed_r = pos;
	return HTTP_PARSE_MORE;
}

bool http_message_header(const struct http_message *msg, struct str name,
			 struct str *value_r)
{
	for (size_t i = 0; i < msg->header_count; i++) {
		if (str_eq_nocase(msg->headers[i].name, name)) {
			*value_r = msg->headers[i].value;
			return true;
		}
	}
	*value_r = STR_NULL;
	return false;
}

const char *http_status_text(unsigned int status)
{
	switch (status) {
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}
