/*
 * The sample store: every collected file once, named by its SHA-256 under a
 * two-hex-digit fan-out folder, mode 0444. Samples are data: nothing here
 * ever sets an execute bit or runs a file.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mamori/base.h"

struct mamori_store {
	char *dir;
};

int mamori_store_open(mamori_store **out, const char *dir)
{
	*out = NULL;
	int rc = mamori_mkdir_p(dir);
	if (rc != MAMORI_OK)
		return rc;
	mamori_store *s = calloc(1, sizeof(*s));
	if (!s || !(s->dir = strdup(dir))) {
		free(s);
		return mamori_fail(MAMORI_ENOMEM, "store %s", dir);
	}
	*out = s;
	return MAMORI_OK;
}

void mamori_store_free(mamori_store *s)
{
	if (!s)
		return;
	free(s->dir);
	free(s);
}

static int valid_sha(const char *sha)
{
	if (strlen(sha) != 64)
		return 0;
	for (int i = 0; i < 64; i++)
		if (!((sha[i] >= '0' && sha[i] <= '9') || (sha[i] >= 'a' && sha[i] <= 'f')))
			return 0;
	return 1;
}

static int sample_path(const mamori_store *s, const char *sha, char *buf, size_t bufsize, bool dir_only)
{
	int n = dir_only ? snprintf(buf, bufsize, "%s/%.2s", s->dir, sha)
			 : snprintf(buf, bufsize, "%s/%.2s/%s", s->dir, sha, sha);
	if (n < 0 || (size_t)n >= bufsize)
		return mamori_fail(MAMORI_EINVAL, "store path too long");
	return MAMORI_OK;
}

int mamori_store_put(mamori_store *s, const void *data, size_t len, char sha256_out[65])
{
	char path[4096];
	struct stat st;
	mamori_sha256_hex(sha256_out, data, len);
	int rc = sample_path(s, sha256_out, path, sizeof(path), true);
	if (rc == MAMORI_OK)
		rc = mamori_mkdir_p(path);
	if (rc == MAMORI_OK)
		rc = sample_path(s, sha256_out, path, sizeof(path), false);
	if (rc != MAMORI_OK)
		return rc;
	if (stat(path, &st) == 0 && (size_t)st.st_size == len)
		return MAMORI_OK;
	rc = mamori_file_write_atomic(path, data, len);
	if (rc == MAMORI_OK && chmod(path, 0444) != 0)
		rc = mamori_fail(MAMORI_EIO, "%s: chmod: %s", path, strerror(errno));
	return rc;
}

int mamori_store_path(const mamori_store *s, const char *sha256, char *buf, size_t bufsize)
{
	struct stat st;
	if (!valid_sha(sha256))
		return mamori_fail(MAMORI_EINVAL, "'%s' is not a SHA-256", sha256);
	int rc = sample_path(s, sha256, buf, bufsize, false);
	if (rc == MAMORI_OK && stat(buf, &st) != 0)
		rc = mamori_fail(MAMORI_ENOTFOUND, "sample %s is not in the store", sha256);
	return rc;
}
