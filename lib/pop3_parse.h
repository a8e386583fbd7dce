#ifndef MR_POP3_PARSE_H
#define MR_POP3_PARSE_H

/* Incremental POP3 command line parser (RFC 1939, RFC 2449, RFC 5034).
 * Pure: bytes in, one command out, no I/O.
 *
 * Line ends: CRLF or a bare LF (like Dovecot); a CR directly before the LF
 * belongs to the line end. Command line: a verb of letters, digits, '-' or
 * '_' (at most POP3_VERB_MAX_LEN, compared case-insensitively), then
 * optional arguments separated by spaces. Arguments may carry 8-bit bytes
 * (passwords); only NUL is rejected anywhere.
 *
 * Every error is recoverable: the bad line is consumed (for TOO_LONG, the
 * rest of it is discarded as it arrives) and the next call starts with the
 * next line. The session answers "-ERR" and decides itself when too many
 * errors mean closing. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "str.h"

#define POP3_VERB_MAX_LEN 40
/* RFC 2449 section 4: 255 octets including CRLF. */
#define POP3_LINE_MAX_DEFAULT 255

struct pop3_parser;

struct pop3_parser_limits {
	/* Bytes of a command line including its line end. */
	size_t max_line_len;
	/* Bytes of an AUTH continuation line including its line end (SASL
	 * responses are often longer than command lines). */
	size_t max_auth_line_len;
	/* Arguments split out into pop3_command.args. */
	unsigned int max_args;
};

enum pop3_verb {
	POP3_VERB_UNKNOWN = 0,
	POP3_VERB_USER,
	POP3_VERB_PASS,
	POP3_VERB_APOP,
	POP3_VERB_AUTH,
	POP3_VERB_CAPA,
	POP3_VERB_STLS,
	POP3_VERB_QUIT,
	POP3_VERB_STAT,
	POP3_VERB_LIST,
	POP3_VERB_RETR,
	POP3_VERB_DELE,
	POP3_VERB_NOOP,
	POP3_VERB_RSET,
	POP3_VERB_TOP,
	POP3_VERB_UIDL,
	POP3_VERB_UTF8,
	POP3_VERB_XCLIENT,
};

struct pop3_command {
	enum pop3_verb verb;
	struct str verb_str; /* as sent */
	/* Everything after the verb and the one space that follows it, as
	 * sent (a PASS password may contain spaces). Empty without args. */
	struct str rest;
	/* rest split at runs of spaces, at most max_args of them. */
	const struct str *args;
	size_t arg_count;
	/* There were more than max_args words; args holds the first ones. */
	bool args_overflow;
	uint64_t offset; /* stream offset of the line */
};

enum pop3_parse_result {
	POP3_PARSE_ERROR = -1,
	POP3_PARSE_MORE = 0,    /* all input consumed, feed more */
	POP3_PARSE_COMMAND = 1, /* *cmd_r holds a command */
	POP3_PARSE_LINE = 2,    /* pop3_parser_read_line: a line */
};

enum pop3_parse_error_kind {
	POP3_PARSE_ERR_NONE = 0,
	POP3_PARSE_ERR_TOO_LONG, /* line over its limit */
	POP3_PARSE_ERR_NUL,      /* NUL byte in the line */
	POP3_PARSE_ERR_EMPTY,    /* empty line */
	POP3_PARSE_ERR_BAD_VERB, /* verb missing, too long or bad bytes */
};

struct pop3_parse_error {
	enum pop3_parse_error_kind kind;
	const char *msg; /* static, client-safe */
	uint64_t offset; /* stream offset of the offending byte */
};

/* Creates a parser with the given limits (copied). Never fails. */
struct pop3_parser *pop3_parser_new(const struct pop3_parser_limits *limits);
/* Frees *parser (wiping its line buffer: it may hold a password) and sets
 * it to NULL; safe on NULL. */
void pop3_parser_free(struct pop3_parser **parser);

/* Consumes bytes from data[0..size) and sets *consumed_r. Returns MORE
 * (all consumed), COMMAND (consumed ends after the line's LF; slices in
 * *cmd_r valid until the next call) or ERROR (*error_r; the next call
 * goes on with the next line). Must not be called while
 * pop3_parser_read_line has a partial line. */
enum pop3_parse_result pop3_parser_parse(struct pop3_parser *parser,
					 const void *data, size_t size,
					 size_t *consumed_r,
					 struct pop3_command *cmd_r,
					 struct pop3_parse_error *error_r);

/* Reads one raw AUTH continuation line (base64, or "*" to cancel) with
 * max_auth_line_len. Returns MORE, LINE (*line_r without line end, valid
 * until the next call) or ERROR (TOO_LONG or NUL). */
enum pop3_parse_result pop3_parser_read_line(struct pop3_parser *parser,
					     const void *data, size_t size,
					     size_t *consumed_r,
					     struct str *line_r,
					     struct pop3_parse_error *error_r);

/* Maps a verb (any case) to its enum; POP3_VERB_UNKNOWN if unknown. */
enum pop3_verb pop3_verb_lookup(struct str verb);

#endif
