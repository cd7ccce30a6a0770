/*
 * What `mamori sandbox run` and `mamori contain run` share: the session
 * options (policy, folder, upstream, database, resolver), their parsing,
 * and the run itself with its signal handling (session_cli.c).
 */
#ifndef MAMORI_CLI_SESSION_CLI_H
#define MAMORI_CLI_SESSION_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct session_cli {
	const char *cmd;   /**< "sandbox" or "contain", for messages */
	bool with_command; /**< `sandbox run`: a command runs in the inmate */
	const char *policy_path, *session, *upstream_ns, *db_path, *resolver;
	bool upstream_host;
	bool no_raw;	  /**< sandbox: the command gets no CAP_NET_RAW */
	bool json;	  /**< machine output */
	uint64_t seconds; /**< sandbox: the command's timeout; contain: how long to run (0: until a signal) */
	uint64_t memory;  /**< sandbox: the command's address space in bytes; 0: 1 GiB; UINT64_MAX: none */
} session_cli;

/** The options both commands take, for their usage text. */
extern const char session_cli_usage[];

/**
 * Parse the options from argv[*pos]: those both commands take, and
 * `--timeout`, `--resolver`, `--memory`, `--no-raw` with a command
 * (c->with_command, stopping at "--"), or `--duration` without. `*pos`
 * ends at the first argument that is not an option. Returns -1 to go on,
 * or the exit code to end with: help was asked for (printed by `usage` to
 * stdout), or an option was wrong (said, with `usage` to stderr).
 */
int session_cli_parse(session_cli *c, int argc, char **argv, int *pos, void (*usage)(FILE *));

/** Run one session: with `argv` (NULL-terminated), that command in the
 *  inmate; without, the gateway alone until a signal or c->seconds. Ends
 *  with the report. Returns the process exit code. */
int session_cli_run(const session_cli *c, char **argv);

#endif
