/*
 * Strict parsing of command-line numbers for the CLI commands: the whole
 * string must be a number in range, otherwise the command reports a usage
 * error (no atoi, no silent zero).
 */
#ifndef MAMORI_CLI_ARGS_H
#define MAMORI_CLI_ARGS_H

#include <stdbool.h>
#include <stdint.h>

/** Parse a double in [lo, hi]; prints "mamori CMD: bad value for OPT" and returns false on error. */
bool cli_parse_double(double *out, const char *s, double lo, double hi, const char *cmd, const char *opt);
/** Parse an unsigned integer in [lo, hi]. */
bool cli_parse_u64(uint64_t *out, const char *s, uint64_t lo, uint64_t hi, const char *cmd, const char *opt);
/** Print "mamori CMD: PATH: <strerror>: <detail>" for a failed library call. */
void cli_report_error(const char *cmd, const char *subject, int err);

#endif
