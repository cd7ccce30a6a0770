/*
 * Run one command inside the inmate namespace (internal to src/contain).
 *
 * The child joins the inmate's network namespace and gets new mount and pid
 * namespaces of its own (it is pid 1 there, with a fresh /proc), resource
 * limits, and stdout/stderr in files of the session folder. A wall-clock
 * timeout kills it, and with it every process it started: ending pid 1 of a
 * pid namespace ends the whole namespace.
 *
 * The command runs without any capability (also as uid 0): it cannot leave
 * its namespaces, mount, or change the gateway's rules. Optionally it keeps
 * CAP_NET_RAW alone, so that raw-packet tools (ping, hping3) work as they
 * would for malware running as root: their packets still only reach the
 * gateway.
 *
 * Limits: RLIMIT_NPROC does not bind uid 0; set uid/gid (drop_privileges)
 * where that matters. The file system is the host's (a private mount
 * propagation, not a new root): isolation of files is a later step.
 */
#ifndef MAMORI_CONTAIN_SANDBOX_H
#define MAMORI_CONTAIN_SANDBOX_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct contain_sandbox_config {
	const char *netns;	 /**< inmate namespace name; required */
	const char *session_dir; /**< stdout.txt and stderr.txt go here; required */
	char *const *argv;	 /**< command and arguments, NULL-terminated; argv[0] searched in PATH */
	char *const *envp;	 /**< NULL: a minimal fixed environment */
	const char *cwd;	 /**< NULL: session_dir */
	unsigned timeout_ms;	 /**< wall clock; 0: 60000 */
	uint64_t cpu_seconds;	 /**< RLIMIT_CPU; 0: 60 */
	uint64_t address_space;	 /**< RLIMIT_AS in bytes; 0: 1 GiB; UINT64_MAX: none */
	uint64_t max_procs;	 /**< RLIMIT_NPROC; 0: 64 */
	uint64_t max_files;	 /**< RLIMIT_NOFILE; 0: 256 */
	uid_t uid;		 /**< with drop_privileges */
	gid_t gid;
	bool drop_privileges;
	bool keep_capabilities; /**< default false: every capability is dropped before exec */
	bool raw_sockets;	/**< keep CAP_NET_RAW alone (floods, pings, scans with raw packets) */
	/** A file bind-mounted (read-only) over /etc/resolv.conf in the
	 *  command's mount namespace, so its resolver is the one the session
	 *  names; NULL: the host's file shows. */
	const char *resolv_conf;
	/** When this descriptor becomes readable the command is killed (a
	 *  signal thread writes to a pipe); 0: none (0 is stdin, never a pipe
	 *  of ours). */
	int cancel_fd;
} contain_sandbox_config;

typedef struct contain_sandbox_result {
	bool exited; /**< normal exit; exit_code is valid */
	int exit_code;
	int term_signal; /**< signal that ended it, when !exited */
	bool timed_out;	 /**< killed by the wall-clock timeout */
	bool cancelled;	 /**< killed because cancel_fd became readable */
	double wall_seconds;
} contain_sandbox_result;

/** Run and wait; the command's own failure is in *out, not the return
 *  value. Fails only when the command could not be started: MAMORI_ENOTFOUND
 *  when the program does not exist, MAMORI_EIO otherwise, with the failed
 *  step and errno in the detail. */
int contain_sandbox_run(contain_sandbox_result *out, const contain_sandbox_config *cfg);

#endif
