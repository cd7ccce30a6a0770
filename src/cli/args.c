/* Strict number parsing and error reporting shared by the CLI commands. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "args.h"
#include "mamori/base.h"

bool cli_parse_double(double *out, const char *s, double lo, double hi, const char *cmd, const char *opt)
{
	char *end = NULL;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || isnan(v) || v < lo || v > hi) {
		fprintf(stderr, "mamori %s: %s needs a number from %g to %g, not '%s'\n", cmd, opt, lo, hi,
			s);
		return false;
	}
	*out = v;
	return true;
}

bool cli_parse_u64(uint64_t *out, const char *s, uint64_t lo, uint64_t hi, const char *cmd, const char *opt)
{
	char *end = NULL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi) {
		fprintf(stderr, "mamori %s: %s needs a whole number from %llu to %llu, not '%s'\n", cmd, opt,
			(unsigned long long)lo, (unsigned long long)hi, s);
		return false;
	}
	*out = v;
	return true;
}

void cli_report_error(const char *cmd, const char *subject, int err)
{
	const char *detail = mamori_error_detail();
	if (subject)
		fprintf(stderr, "mamori %s: %s: %s%s%s\n", cmd, subject, mamori_strerror(err),
			detail[0] ? ": " : "", detail);
	else
		fprintf(stderr, "mamori %s: %s%s%s\n", cmd, mamori_strerror(err), detail[0] ? ": " : "",
			detail);
}
