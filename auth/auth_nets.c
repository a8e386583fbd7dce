#include "auth_nets.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>

#include "netmask.h"
#include "str.h"

/* The client address as a sockaddr; false when there is none or it does
 * not parse. */
static bool client_sockaddr(const char *ip, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (ip == NULL || ip[0] == '\0')
		return false;
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		return true;
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		return true;
	}
	return false;
}

int auth_nets_match(const char *list, const char *ip, const char **error_r)
{
	struct str rest = str_cstr(list);
	struct sockaddr_storage ss;
	bool have_ip = ip != NULL && ip[0] != '\0';
	bool client_ok = client_sockaddr(ip, &ss);
	char tok[INET6_ADDRSTRLEN + 8];
	int ret = 0;

	/* every item is checked, so a typo is reported even after a match */
	while (rest.len > 0) {
		size_t i = 0;
		while (i < rest.len && rest.p[i] != ',' && rest.p[i] != ' ')
			i++;
		struct str item = str_from(rest.p, i);
		rest = str_slice(rest, i < rest.len ? i + 1 : i, rest.len);
		if (item.len == 0)
			continue;
		if (str_eq(item, STR("local"))) {
			if (!have_ip)
				ret = 1;
			continue;
		}
		struct netmask net;
		if (!str_copy(item, tok, sizeof(tok)) ||
		    netmask_parse(tok, &net, error_r) < 0) {
			*error_r = "allow_nets: invalid network";
			return -1;
		}
		if (client_ok &&
		    netmask_match(&net, (const struct sockaddr *)&ss))
			ret = 1;
	}
	return ret;
}
