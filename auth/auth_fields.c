#include "auth_fields.h"

#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

struct auth_field {
	char *key;
	char *value; /* NULL for a bare key */
	size_t value_len;
};

struct auth_fields {
	struct auth_field *v;
	size_t count;
	size_t alloc;
	size_t bytes; /* key and value bytes, for memsize */
};

struct auth_fields *auth_fields_new(void)
{
	return xcalloc(1, sizeof(struct auth_fields));
}

static void field_clear(struct auth_field *f)
{
	if (f->value != NULL)
		str_wipe(f->value, f->value_len);
	free(f->key);
	free(f->value);
	f->key = NULL;
	f->value = NULL;
}

void auth_fields_free(struct auth_fields **fields)
{
	struct auth_fields *f = *fields;

	if (f == NULL)
		return;
	for (size_t i = 0; i < f->count; i++)
		field_clear(&f->v[i]);
	free(f->v);
	free(f);
	*fields = NULL;
}

static struct auth_field *field_find(const struct auth_fields *f,
				     struct str key)
{
	if (f == NULL)
		return NULL;
	for (size_t i = 0; i < f->count; i++) {
		if (str_eq(str_cstr(f->v[i].key), key))
			return &f->v[i];
	}
	return NULL;
}

void auth_fields_set(struct auth_fields *fields, struct str key,
		     const struct str *value)
{
	struct auth_field *f = field_find(fields, key);

	if (f != NULL) {
		fields->bytes -= f->value == NULL ? 0 : f->value_len + 1;
		if (f->value != NULL)
			str_wipe(f->value, f->value_len);
		free(f->value);
		f->value = NULL;
	} else {
		if (fields->count == fields->alloc) {
			fields->alloc =
			    fields->alloc == 0 ? 4 : fields->alloc * 2;
			fields->v = xreallocarray(fields->v, fields->alloc,
						  sizeof(*fields->v));
		}
		f = &fields->v[fields->count++];
		f->key = xstrndup(key.p == NULL ? "" : key.p, key.len);
		f->value = NULL;
		fields->bytes += strlen(f->key) + 1;
	}
	f->value_len = 0;
	if (value != NULL) {
		f->value =
		    xstrndup(value->p == NULL ? "" : value->p, value->len);
		f->value_len = strlen(f->value);
		fields->bytes += f->value_len + 1;
	}
}

void auth_fields_set_cstr(struct auth_fields *fields, const char *key,
			  const char *value)
{
	struct str v = str_cstr(value);

	auth_fields_set(fields, str_cstr(key), value == NULL ? NULL : &v);
}

void auth_fields_remove(struct auth_fields *fields, const char *key)
{
	struct auth_field *f = field_find(fields, str_cstr(key));

	if (f == NULL)
		return;
	size_t i = (size_t)(f - fields->v);
	fields->bytes -=
	    strlen(f->key) + 1 + (f->value == NULL ? 0 : f->value_len + 1);
	field_clear(f);
	memmove(&fields->v[i], &fields->v[i + 1],
		(fields->count - i - 1) * sizeof(*fields->v));
	fields->count--;
}

struct auth_fields *auth_fields_dup(const struct auth_fields *fields)
{
	if (fields == NULL)
		return NULL;
	struct auth_fields *d = auth_fields_new();
	for (size_t i = 0; i < fields->count; i++) {
		const struct auth_field *f = &fields->v[i];
		struct str v = str_from(f->value, f->value_len);
		auth_fields_set(d, str_cstr(f->key),
				f->value == NULL ? NULL : &v);
	}
	return d;
}

bool auth_fields_has(const struct auth_fields *fields, const char *key)
{
	return field_find(fields, str_cstr(key)) != NULL;
}

const char *auth_fields_get(const struct auth_fields *fields, const char *key)
{
	const struct auth_field *f = field_find(fields, str_cstr(key));

	if (f == NULL)
		return NULL;
	return f->value == NULL ? "" : f->value;
}

size_t auth_fields_count(const struct auth_fields *fields)
{
	return fields == NULL ? 0 : fields->count;
}

void auth_fields_at(const struct auth_fields *fields, size_t i,
		    const char **key_r, const char **value_r)
{
	*key_r = fields->v[i].key;
	*value_r = fields->v[i].value;
}

size_t auth_fields_memsize(const struct auth_fields *fields)
{
	if (fields == NULL)
		return 0;
	return sizeof(*fields) + fields->alloc * sizeof(*fields->v) +
	       fields->bytes;
}
