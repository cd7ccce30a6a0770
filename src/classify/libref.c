/* The built-in reference binaries of known library code (data/libref). */
#include <stdio.h>

#include "libref_data.h"
#include "mamori/base.h"
#include "mamori/classify.h"

int mamori_libcode_add_builtin(mamori_libcode *lc, size_t *out_count)
{
	*out_count = 0;
	for (size_t i = 0; i < libref_count; i++) {
		int rc = mamori_libcode_add_binary(lc, libref_blobs[i].data, libref_blobs[i].size);
		if (rc != MAMORI_OK) {
			/* mamori_fail() writes the detail it would read: copy it first. */
			char why[256];
			snprintf(why, sizeof(why), "%s", mamori_error_detail());
			return mamori_fail(rc, "built-in library reference %s: %s", libref_blobs[i].name,
					   why);
		}
		(*out_count)++;
	}
	return MAMORI_OK;
}
