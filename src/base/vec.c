/*
 * A growth buffer with a hard maximum element count: the way every list
 * built from hostile input is bounded. Growth doubles the capacity but
 * never past the maximum, and all size arithmetic is overflow-checked.
 */
#include <stdlib.h>
#include <string.h>

#include "mamori/base.h"

void mamori_vec_init(mamori_vec *v, size_t elem_size, size_t max_count)
{
	memset(v, 0, sizeof(*v));
	v->elem_size = elem_size;
	v->max_count = max_count;
}

int mamori_vec_grow(mamori_vec *v, size_t n, void **out)
{
	if (n > v->max_count || v->count > v->max_count - n)
		return mamori_fail(MAMORI_ELIMIT, "more than %zu elements", v->max_count);
	size_t want = v->count + n;
	if (want > v->cap) {
		size_t cap = v->cap ? v->cap : 16;
		while (cap < want)
			cap = cap > SIZE_MAX / 2 ? want : cap * 2;
		if (cap > v->max_count)
			cap = v->max_count;
		if (cap > SIZE_MAX / v->elem_size)
			return mamori_fail(MAMORI_ENOMEM, "vector of %zu elements", cap);
		void *p = realloc(v->data, cap * v->elem_size);
		if (!p)
			return mamori_fail(MAMORI_ENOMEM, "vector of %zu elements", cap);
		v->data = p;
		v->cap = cap;
	}
	void *slot = (char *)v->data + v->count * v->elem_size;
	memset(slot, 0, n * v->elem_size);
	v->count += n;
	if (out)
		*out = slot;
	return MAMORI_OK;
}

int mamori_vec_push(mamori_vec *v, const void *elem)
{
	void *slot = NULL;
	int rc = mamori_vec_grow(v, 1, &slot);
	if (rc == MAMORI_OK && slot)
		memcpy(slot, elem, v->elem_size);
	return rc;
}

void *mamori_vec_steal(mamori_vec *v, size_t *count)
{
	void *p = v->data;
	if (count)
		*count = v->count;
	v->data = NULL;
	v->count = v->cap = 0;
	return p;
}

void mamori_vec_free(mamori_vec *v)
{
	if (!v)
		return;
	free(v->data);
	v->data = NULL;
	v->count = v->cap = 0;
}
