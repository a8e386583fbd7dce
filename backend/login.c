#include "login.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "maildir.h"
#include "xmalloc.h"

struct userip_entry {
	struct userip_entry *next;
	unsigned int count;
	char key[];
};

bool userip_take(struct userip_table *t, const char *key, uint64_t max)
{
	struct userip_entry *u;
	bool ok = true;

	pthread_mutex_lock(&t->lock);
	for (u = t->list; u != NULL; u = u->next) {
		if (strcmp(u->key, key) == 0)
			break;
	}
	if (u == NULL) {
		size_t len = strlen(key) + 1;
		u = xcalloc(1, sizeof(*u) + len);
		memcpy(u->key, key, len);
		u->next = t->list;
		t->list = u;
	}
	if (max > 0 && u->count >= max)
		ok = false;
	else
		u->count++;
	pthread_mutex_unlock(&t->lock);
	return ok;
}

void userip_release(struct userip_table *t, const char *key)
{
	pthread_mutex_lock(&t->lock);
	for (struct userip_entry **pp = &t->list; *pp != NULL;
	     pp = &(*pp)->next) {
		struct userip_entry *u = *pp;
		if (strcmp(u->key, key) != 0)
			continue;
		if (--u->count == 0) {
			*pp = u->next;
			free(u);
		}
		break;
	}
	pthread_mutex_unlock(&t->lock);
}

bool login_master_split(struct str user, struct str authzid, const char *sep,
			struct str *target_r, struct str *master_r)
{
	size_t seplen = strlen(sep);

	if (authzid.len > 0 && !str_eq(authzid, user)) {
		*target_r = authzid;
		*master_r = user;
		return true;
	}
	if (seplen == 0 || user.len <= seplen)
		return false;
	for (size_t i = 1; i + seplen < user.len; i++) {
		if (memcmp(user.p + i, sep, seplen) == 0) {
			*target_r = str_from(user.p, i);
			*master_r = str_slice(user, i + seplen,
					      user.len - i - seplen);
			return true;
		}
	}
	return false;
}

bool login_proxy_addr(struct str value, struct log_ctx *log, char *ip)
{
	struct net_addr a;
	char text[NET_ADDR_STR_MAX];
	const char *error;

	if (!str_copy(value, text, sizeof(text)) ||
	    net_addr_parse(text, NET_ADDR_PORT_OPTIONAL, &a, &error) < 0)
		return false;
	log_ctx_set_rip(log, &a.u.sa);
	net_addr_ip_str(&a, ip, NET_ADDR_STR_MAX);
	return true;
}

bool login_proxy_session(struct str value, struct log_ctx *log,
			 char *session_id)
{
	if (value.len == 0 || value.len > LOG_SESSION_ID_LEN)
		return false;
	for (size_t i = 0; i < value.len; i++) {
		unsigned char c = (unsigned char)value.p[i];
		if (c <= 0x20 || c >= 0x7f || c == '>')
			return false;
	}
	memcpy(session_id, value.p, value.len);
	session_id[value.len] = '\0';
	log_ctx_set_session(log, session_id);
	return true;
}

int login_mkdir_parents(const char *dir)
{
	char path[MAILDIR_PATH_MAX];

	if (!str_copy(str_cstr(dir), path, sizeof(path))) {
		errno = ENAMETOOLONG;
		return -1;
	}
	char *slash = strrchr(path, '/');
	if (slash == NULL || slash == path)
		return 0;
	*slash = '\0';
	for (char *p = path + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0700) == -1 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(path, 0700) == -1 && errno != EEXIST)
		return -1;
	return 0;
}
