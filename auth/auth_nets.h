#ifndef MR_AUTH_NETS_H
#define MR_AUTH_NETS_H

/* Dovecot's allow_nets extra field: a list of networks separated by commas
 * and/or spaces, each "ADDR" or "ADDR/BITS" (IPv4 or IPv6), plus the word
 * "local" for connections without an IP (UNIX sockets). IPv4-mapped IPv6
 * client addresses match IPv4 networks. */

/* Returns 1 when ip (textual; NULL or "" for a local connection) is inside
 * one of the networks in list, 0 when it is not (or ip is unparsable), -1
 * when list is malformed, with a static *error_r. */
int auth_nets_match(const char *list, const char *ip, const char **error_r);

#endif
