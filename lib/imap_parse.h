#ifndef MR_IMAP_PARSE_H
#define MR_IMAP_PARSE_H

/* Incremental IMAP command tokenizer (RFC 3501 syntax, RFC 7888 LITERAL+,
 * RFC 3516 literal8). Pure: bytes in, one event out, no I/O.
 *
 * The caller owns the input. Each call consumes a prefix of it (at most one
 * command) and copies what the command needs into parser-owned storage,
 * which is bounded by the limits given at creation:
 *   max_line_len + max_literal_size + max_args * small per-token overhead.
 * Input may be split at any byte.
 *
 * Line ends: CRLF or a bare LF (as Dovecot accepts). A CR directly before
 * the LF is part of the line end; a CR anywhere else is an invalid byte.
 *
 * Lenient where Dovecot is lenient: several spaces between arguments and
 * trailing spaces are accepted, and a quoted string, literal or list may be
 * followed directly by the next argument. Atoms may carry '\', '%', '*',
 * '[' and ']' (flags, LIST patterns, FETCH BODY[...]); "BODY[HEADER.FIELDS
 * (A B)]" arrives as ATOM "BODY[HEADER.FIELDS", LIST (A B), ATOM "]". */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "str.h"

struct imap_parser;

struct imap_parser_limits {
	/* Bytes of one command outside literal data, counting every line
	 * terminator and every "{n}" announcement. */
	size_t max_line_len;
	/* Largest single literal, and also the budget for all literal bytes
	 * of one command together. */
	size_t max_literal_size;
	/* Deepest list nesting: 0 forbids lists, 1 allows "(a b)". */
	unsigned int max_list_depth;
	/* Arguments of one command, counted at every nesting level; a list
	 * counts as one plus its elements. Tag and name do not count. */
	unsigned int max_args;
	/* Accept 8-bit bytes (UTF-8) inside quoted strings. RFC 3501 forbids
	 * them, but clients send UTF-8 passwords quoted and Dovecot takes
	 * them; NUL stays an error either way. */
	bool allow_8bit_quoted;
};

enum imap_parse_result {
	IMAP_PARSE_ERROR = -1,  /* see the imap_parse_error */
	IMAP_PARSE_MORE = 0,    /* all input consumed, feed more */
	IMAP_PARSE_COMMAND = 1, /* a complete command in *cmd_r */
	/* A synchronizing literal "{n}" was announced: send "+ OK" (or
	 * similar) to the client, then feed the literal bytes. */
	IMAP_PARSE_LITERAL_CONT = 2,
	IMAP_PARSE_LINE = 3, /* imap_parser_read_line: a line */
};

enum imap_arg_type {
	IMAP_ARG_ATOM = 0,
	IMAP_ARG_NIL,     /* the atom NIL (any case); "NIL" quoted is QUOTED */
	IMAP_ARG_QUOTED,  /* value unescaped: \\ and \" */
	IMAP_ARG_LITERAL, /* {n}, {n+}, ~{n}, ~{n+}: raw bytes, may be 8-bit
			   * or contain NUL: check before using as text */
	IMAP_ARG_LIST,    /* (...) */
};

struct imap_arg {
	enum imap_arg_type type;
	bool literal_nonsync; /* LITERAL sent as {n+} */
	bool literal8;        /* LITERAL sent as ~{n} */
	/* ATOM, NIL: as sent; QUOTED: unescaped; LITERAL: its bytes. */
	struct str str;
	/* LIST: its elements, contiguous (NULL when empty). */
	const struct imap_arg *list;
	size_t list_count;
	/* Stream offset of the argument's first byte ('"', '(', '{', '~'). */
	uint64_t offset;
};

struct imap_command {
	struct str tag;
	struct str name; /* as sent; compare with str_eq_nocase */
	const struct imap_arg *args;
	size_t arg_count;
	uint64_t offset; /* stream offset of the tag */
	/* IMAP_PARSE_LITERAL_CONT only: the announced literal size (tag and
	 * name are also set then, args are not). */
	uint64_t literal_size;
};

enum imap_parse_error_kind {
	IMAP_PARSE_ERR_NONE = 0,
	/* Line over max_line_len: "Too long argument.". fatal: answer
	 * "* BAD" and close (where the line ends is unknown). The parser
	 * itself discards up to the next LF and can go on. */
	IMAP_PARSE_ERR_TOO_LONG,
	/* Literal over max_literal_size (or over what is left of the
	 * command's literal budget). For {n} recoverable: the client waits
	 * for "+", so it sends no literal; answer NO [TOOBIG] or BAD. For
	 * {n+} fatal (literal_nonsync is set): the bytes come anyway. */
	IMAP_PARSE_ERR_LITERAL_TOO_BIG,
	/* Malformed "{n}": no digits, no '}', text after '}'. */
	IMAP_PARSE_ERR_BAD_LITERAL,
	/* Quoted string not closed before the line end (or a CR in it). */
	IMAP_PARSE_ERR_UNTERMINATED_QUOTE,
	/* Invalid byte in tag, command name or atom; bad escape. */
	IMAP_PARSE_ERR_BAD_CHAR,
	/* 8-bit byte outside a literal. */
	IMAP_PARSE_ERR_8BIT,
	/* NUL byte outside a literal. */
	IMAP_PARSE_ERR_NUL,
	/* Unexpected ')' or missing ')'. */
	IMAP_PARSE_ERR_BAD_LIST,
	/* Nesting over max_list_depth. */
	IMAP_PARSE_ERR_TOO_DEEP,
	/* More than max_args arguments. */
	IMAP_PARSE_ERR_TOO_MANY_ARGS,
	/* Empty line or a line starting with a space. */
	IMAP_PARSE_ERR_MISSING_TAG,
	/* Tag without a command name. */
	IMAP_PARSE_ERR_MISSING_COMMAND,
};

/* Every error except TOO_LONG is recoverable (fatal false) unless the bad
 * line ends in a non-synchronizing literal announcement {n+}: then the
 * client sends the literal bytes regardless, the parser cannot know where
 * the next command starts, fatal is set and the parser stays failed. After
 * a recoverable error the rest of the bad line has been consumed and the
 * next call starts a new command. */
struct imap_parse_error {
	enum imap_parse_error_kind kind;
	const char *msg; /* static, client-safe, e.g. "Too long argument." */
	bool fatal;      /* reply, then close the connection */
	bool literal_nonsync; /* LITERAL_TOO_BIG: it was {n+} */
	uint64_t offset;      /* stream offset of the offending byte */
	uint64_t pos;         /* the same, counted from the command's start */
	struct str tag;       /* the command's tag when known, else empty */
};

/* Creates a parser with the given limits (copied). Never fails. */
struct imap_parser *imap_parser_new(const struct imap_parser_limits *limits);
/* Frees *parser and sets it to NULL; safe on NULL. Wipes the storage, as
 * it may hold credentials. */
void imap_parser_free(struct imap_parser **parser);
/* Forgets any partial command and a failed state; the stream offset keeps
 * counting. */
void imap_parser_reset(struct imap_parser *parser);

/* Consumes bytes from data[0..size) and sets *consumed_r (never more than
 * size; the caller drops that many bytes and calls again with the rest).
 * Returns:
 *   MORE         everything consumed, nothing complete yet;
 *   COMMAND      *cmd_r holds a command, consumed ends after its last LF;
 *   LITERAL_CONT consumed ends after "{n}\r\n"; send a continuation, then
 *                call again with the literal bytes (to refuse the literal
 *                instead, answer the tag with NO/BAD and call
 *                imap_parser_reset(): the client sends no literal);
 *   ERROR        *error_r describes it; see struct imap_parse_error.
 * Slices in *cmd_r and error_r->tag stay valid until the next call on this
 * parser. A failed parser returns the same error (without tag) again and
 * discards its input. Must not be called while imap_parser_read_line has a
 * partial line. */
enum imap_parse_result imap_parser_parse(struct imap_parser *parser,
					 const void *data, size_t size,
					 size_t *consumed_r,
					 struct imap_command *cmd_r,
					 struct imap_parse_error *error_r);

/* Reads one raw line, as an AUTHENTICATE continuation response (base64 or
 * "*"), with the same line limit and line end rules; only NUL is rejected.
 * Returns MORE, LINE (*line_r without its line end, valid until the next
 * call) or ERROR (TOO_LONG: fatal, NUL: recoverable). Must be called only
 * between commands (never after LITERAL_CONT or mid-command). */
enum imap_parse_result imap_parser_read_line(struct imap_parser *parser,
					     const void *data, size_t size,
					     size_t *consumed_r,
					     struct str *line_r,
					     struct imap_parse_error *error_r);

/* Bytes currently allocated by the parser (for tests and accounting). */
size_t imap_parser_memory(const struct imap_parser *parser);
/* Upper bound of imap_parser_memory() for these limits. */
size_t imap_parser_memory_max(const struct imap_parser_limits *limits);

/* Gets an astring (ATOM, NIL as "NIL", QUOTED or LITERAL) as text.
 * Returns false for a LIST or a value containing NUL. */
bool imap_arg_get_astring(const struct imap_arg *arg, struct str *value_r);

#endif
