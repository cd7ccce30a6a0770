/*
 * JSON output through jansson: one place decides indentation and key
 * order (insertion order, so reports read in the order they were built).
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "mamori/base.h"

int mamori_json_write(FILE *f, const json_t *root, bool pretty)
{
	size_t flags = JSON_PRESERVE_ORDER | (pretty ? JSON_INDENT(2) : JSON_COMPACT);
	if (json_dumpf(root, f, flags) != 0 || fputc('\n', f) == EOF)
		return mamori_fail(MAMORI_EIO, "cannot write JSON");
	return MAMORI_OK;
}

int mamori_json_write_path(const char *path, const json_t *root)
{
	char *text = json_dumps(root, JSON_PRESERVE_ORDER | JSON_INDENT(2));
	if (!text)
		return mamori_fail(MAMORI_ENOMEM, "cannot serialise JSON for %s", path);
	size_t len = strlen(text);
	text[len] = '\0';
	char *withnl = realloc(text, len + 2);
	if (!withnl) {
		free(text);
		return mamori_fail(MAMORI_ENOMEM, "cannot serialise JSON for %s", path);
	}
	withnl[len] = '\n';
	withnl[len + 1] = '\0';
	int rc = mamori_file_write_atomic(path, withnl, len + 1);
	free(withnl);
	return rc;
}

json_t *mamori_json_u64(uint64_t v)
{
	return json_integer((json_int_t)v);
}
