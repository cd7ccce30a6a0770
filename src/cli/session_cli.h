/*
 * What `mamori sandbox run` and `mamori contain run` share: the session
 * options (policy, folder, upstream, database, resolver), their parsing,
 * and the run itself with its signal handling (session_cli.c).
 */
#ifndef MAMORI_CLI_SESSION_CLI_H
#define MAMORI_CLI_SESSION_CLI_H

#include <stdbool.h>
#include <stdint.h>

typedef struct session_cli {
	const char *cmd; /**< "sandbox" or "contain", for messages */
	const char *policy_path, *session, *upstream_ns, *db_path, *resolver;
	bool upstream_host;
	bool no_raw;	  /**< sandbox: the command gets no CAP_NET_RAW */
	bool json;	  /**< machine output */
	uint64_t seconds; /**< sandbox: the command's timeout; contain: how long to run (0: until a signal) */
	uint64_t memory;  /**< sandbox: the command's address space in bytes; 0: 1 GiB; UINT64_MAX: none */
} session_cli;

/** The options both commands take, for their usage text. */
extern const char session_cli_usage[];

/** Parse `opt` (with `val`, which may be NULL when there is none). Returns
 *  the number of arguments used (1 or 2), 0 when `opt` is not a session
 *  option, or -1 after printing why the option is wrong. */
int session_cli_option(session_cli *c, const char *opt, const char *val);

/** Run one session: with `argv` (NULL-terminated), that command in the
 *  inmate; without, the gateway alone until a signal or c->seconds. Ends
 *  with the report. Returns the process exit code. */
int session_cli_run(const session_cli *c, char **argv);

#endif
