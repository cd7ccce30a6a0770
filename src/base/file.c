/*
 * Reading and writing whole files with limits. A sample is read only when
 * it is a regular file no larger than the caller's maximum; writes go to a
 * temporary file that is renamed into place, so a crash never leaves a
 * half-written report.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mamori/base.h"

int mamori_file_read(uint8_t **out, size_t *out_len, const char *path, size_t max)
{
	int rc = MAMORI_OK;
	uint8_t *buf = NULL;
	struct stat st;
	*out = NULL;
	*out_len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		rc = mamori_fail(MAMORI_EIO, "%s: cannot open: %s", path, strerror(errno));
		goto done;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		rc = mamori_fail(MAMORI_EIO, "%s: not a regular file", path);
		goto done;
	}
	if ((uint64_t)st.st_size > max) {
		rc = mamori_fail(MAMORI_ELIMIT, "%s: %lld bytes is larger than the limit of %zu", path,
				 (long long)st.st_size, max);
		goto done;
	}
	size_t size = (size_t)st.st_size;
	buf = malloc(size + 1);
	if (!buf) {
		rc = mamori_fail(MAMORI_ENOMEM, "%s: %zu bytes", path, size);
		goto done;
	}
	size_t got = 0;
	while (got < size) {
		ssize_t n = read(fd, buf + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = mamori_fail(MAMORI_EIO, "%s: read failed after %zu bytes", path, got);
			goto done;
		}
		got += (size_t)n;
	}
	buf[size] = 0;
	*out = buf;
	*out_len = size;
	buf = NULL;
done:
	if (fd >= 0)
		close(fd);
	free(buf);
	return rc;
}

int mamori_file_write_atomic(const char *path, const void *data, size_t len)
{
	int rc = MAMORI_OK;
	char tmp[4096];
	int fd = -1;
	/* Unique per process and call, so threads storing the same sample at
	 * once never share a temporary file. */
	static _Atomic unsigned long counter;
	unsigned long seq = counter++;
	int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld.%lu", path, (long)getpid(), seq);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return mamori_fail(MAMORI_EINVAL, "path too long: %s", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = mamori_fail(MAMORI_EIO, "%s: cannot create: %s", tmp, strerror(errno));
		goto done;
	}
	const uint8_t *p = data;
	size_t left = len;
	while (left) {
		ssize_t w = write(fd, p, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			rc = mamori_fail(MAMORI_EIO, "%s: write failed: %s", tmp, strerror(errno));
			goto done;
		}
		p += w;
		left -= (size_t)w;
	}
	if (close(fd) != 0) {
		fd = -1;
		rc = mamori_fail(MAMORI_EIO, "%s: close failed: %s", tmp, strerror(errno));
		goto done;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		rc = mamori_fail(MAMORI_EIO, "%s: rename failed: %s", path, strerror(errno));
done:
	if (fd >= 0)
		close(fd);
	if (rc != MAMORI_OK)
		unlink(tmp);
	return rc;
}

int mamori_mkdir_p(const char *path)
{
	char buf[4096];
	size_t len = strlen(path);
	if (len == 0 || len >= sizeof(buf))
		return mamori_fail(MAMORI_EINVAL, "bad directory path '%s'", path);
	memcpy(buf, path, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char saved = buf[i];
		buf[i] = '\0';
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return mamori_fail(MAMORI_EIO, "%s: cannot create directory: %s", buf,
					   strerror(errno));
		buf[i] = saved;
	}
	struct stat st;
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
		return mamori_fail(MAMORI_EIO, "%s: not a directory", path);
	return MAMORI_OK;
}

bool mamori_write_all(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

bool mamori_send_all(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}
