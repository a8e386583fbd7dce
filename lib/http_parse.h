#ifndef MR_HTTP_PARSE_H
#define MR_HTTP_PARSE_H

/*
 * Incremental HTTP/1.x message parser (RFC 9112), for the admin API:
 * requests on the server side, responses on the client side (`mailring`).
 * Pure: bytes in, one message out, no I/O.
 *
 * What it accepts:
 *   request  = method SP target SP "HTTP/1." ("0"|"1") CRLF
 *   response = "HTTP/1." ("0"|"1") SP 3DIGIT [SP reason] CRLF
 *   then header lines `name ":" OWS value OWS` CRLF, an empty line, and a
 *   body of exactly Content-Length bytes (none without the header).
 * Line ends are CRLF or a bare LF; a CR anywhere else, a NUL or another
 * control byte is an error. Obsolete line folding is refused. There is no
 * chunked coding: a Transfer-Encoding header is refused with 411 (send
 * Content-Length). A response must carry Content-Length unless its status
 * has no body (1xx, 204, 304).
 *
 * Limits: every line (with its line end) at most max_line_len bytes, at
 * most max_headers header lines, a body at most max_body bytes; the
 * parser's own memory is bounded by them.
 *
 * Errors are final for the message: the caller answers error.status (for
 * a request) and closes the connection; http_parser_reset() starts over.
 * After DONE the next call starts the next message (pipelining: the bytes
 * after a message are not consumed by the call that returns DONE).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "str.h"

#define HTTP_LINE_MAX_DEFAULT 4096
#define HTTP_HEADERS_MAX_DEFAULT 64
#define HTTP_METHOD_MAX_LEN 16

enum http_parse_mode {
	HTTP_PARSE_MODE_REQUEST = 0, /* server side: parse requests */
	HTTP_PARSE_MODE_RESPONSE,    /* client side: parse responses */
};

struct http_parser_limits {
	size_t max_line_len;     /* bytes of one line, line end included */
	unsigned int max_headers; /* header lines per message */
	size_t max_body;         /* Content-Length at most this */
};

struct http_header {
	struct str name;  /* as sent */
	struct str value; /* without surrounding blanks */
};

struct http_message {
	/* requests */
	struct str method;
	struct str target;
	/* responses */
	unsigned int status;
	struct str reason;
	/* both */
	unsigned int version_minor; /* HTTP/1.0 or HTTP/1.1 */
	const struct http_header *headers;
	size_t header_count;
	struct str body;
	bool has_content_length;
};

enum http_parse_result {
	HTTP_PARSE_ERROR = -1,
	HTTP_PARSE_MORE = 0, /* all input consumed, feed more */
	HTTP_PARSE_DONE = 1, /* *msg_r holds a message */
};

enum http_parse_error_kind {
	HTTP_PARSE_ERR_NONE = 0,
	HTTP_PARSE_ERR_LINE_TOO_LONG,     /* 414 first line, 431 a header */
	HTTP_PARSE_ERR_TOO_MANY_HEADERS,  /* 431 */
	HTTP_PARSE_ERR_BODY_TOO_LARGE,    /* 413: Content-Length > max_body */
	HTTP_PARSE_ERR_LENGTH_REQUIRED,   /* 411: Transfer-Encoding, or a
					   * response without Content-Length */
	HTTP_PARSE_ERR_BAD_FIRST_LINE,    /* 400: request or status line */
	HTTP_PARSE_ERR_BAD_VERSION,       /* 505: HTTP/2.0, HTTP/1.2... */
	HTTP_PARSE_ERR_BAD_HEADER,        /* 400: syntax, folding, bytes */
	HTTP_PARSE_ERR_BAD_CONTENT_LENGTH, /* 400: not digits, repeated */
	HTTP_PARSE_ERR_BAD_BYTE,          /* 400: NUL, stray CR, control */
};

struct http_parse_error {
	enum http_parse_error_kind kind;
	unsigned int status; /* HTTP status to answer a request with */
	const char *msg;     /* static, client-safe */
	uint64_t offset;     /* stream offset of the offending byte */
};

struct http_parser;

/* Creates a parser (limits are copied). Never fails. */
struct http_parser *http_parser_new(enum http_parse_mode mode,
				    const struct http_parser_limits *limits);
/* Frees *parser and sets it to NULL; safe on NULL. */
void http_parser_free(struct http_parser **parser);
/* Forgets any partial message and error; the stream offset restarts at 0. */
void http_parser_reset(struct http_parser *parser);

/* Consumes bytes from data[0..size) and sets *consumed_r. Returns MORE
 * (everything consumed), DONE (consumed ends right after the message;
 * *msg_r's slices stay valid until the next call) or ERROR (*error_r;
 * consumed ends after the line holding the offending byte, or after that
 * byte for LINE_TOO_LONG; every later call returns the same error, with
 * nothing consumed, until http_parser_reset). */
enum http_parse_result http_parser_feed(struct http_parser *parser,
					const void *data, size_t size,
					size_t *consumed_r,
					struct http_message *msg_r,
					struct http_parse_error *error_r);

/* The value of the first header called name (case-insensitive), or
 * STR_NULL with false. */
bool http_message_header(const struct http_message *msg, struct str name,
			 struct str *value_r);

/* Reason phrase of a status code ("Not Found"); "Unknown" otherwise. */
const char *http_status_text(unsigned int status);

#endif
