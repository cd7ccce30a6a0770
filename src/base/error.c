/*
 * The error enum's text and the per-thread detail message. The detail is a
 * fixed-size thread-local buffer, so setting it never allocates and never
 * fails; longer details are truncated.
 */
#include <stdio.h>

#define MAMORI_ERROR_IMPL /* no analyzer macro for the definition itself */

#include "mamori/base.h"

static _Thread_local char error_detail[512];

const char *mamori_strerror(int err)
{
	switch (err) {
	case MAMORI_OK: return "success";
	case MAMORI_ENOMEM: return "out of memory";
	case MAMORI_EIO: return "input/output error";
	case MAMORI_EINVAL: return "invalid argument";
	case MAMORI_ETRUNC: return "truncated input";
	case MAMORI_EFORMAT: return "malformed input";
	case MAMORI_EUNSUPPORTED: return "unsupported input";
	case MAMORI_ELIMIT: return "resource limit reached";
	case MAMORI_EDB: return "database error";
	case MAMORI_ENOTFOUND: return "not found";
	case MAMORI_EBELOW: return "below the similarity cut-off";
	default: return "unknown error";
	}
}

const char *mamori_error_detail(void)
{
	return error_detail;
}

int mamori_fail(int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	/* clang-analyzer 14 misreads va_start here (valist.Uninitialized). */
	vsnprintf(error_detail, sizeof(error_detail), fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
	va_end(ap);
	return err;
}

void mamori_error_clear(void)
{
	error_detail[0] = '\0';
}

int mamori_exit_code(int err)
{
	switch (err) {
	case MAMORI_OK: return MAMORI_EXIT_OK;
	case MAMORI_EINVAL: return MAMORI_EXIT_USAGE;
	case MAMORI_ETRUNC:
	case MAMORI_EFORMAT:
	case MAMORI_EUNSUPPORTED: return MAMORI_EXIT_BADINPUT;
	case MAMORI_ELIMIT: return MAMORI_EXIT_LIMIT;
	default: return MAMORI_EXIT_FAILURE;
	}
}
