/*
 * The lab shared by the containment tests (tests/contain/lab.c): an
 * "internet" namespace of the test's own with addresses from the two
 * TEST-NET ranges on its loopback, blackhole routes for both ranges in the
 * host's namespace while the test runs (a second wall), session namespaces
 * in numbered slots, the inmate sandbox, and a raw packet counter on the
 * internet side. Everything is removed at the end, also when an assertion
 * fails (teardown), at exit, and on SIGTERM/SIGINT (meson's timeout).
 *
 * Names follow tests/contain/lab.sh, which removes what a SIGKILLed test
 * left: namespaces "mamori-t<6 hex digits of the pid>...", blackhole routes
 * with metric 4200000 + pid % 100000.
 */
#ifndef MAMORI_TESTS_CONTAIN_LAB_H
#define MAMORI_TESTS_CONTAIN_LAB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netns.h"

#define LAB_MAX_SESSIONS 8
#define LAB_TCP_PORT	 15001
#define LAB_UDP_PORT	 15053
#define LAB_NFQUEUE	 7

typedef struct lab_state {
	bool ready;			 /**< root, and everything is set up */
	char pid_tag[8];		 /**< "t" + 6 hex digits of the pid */
	char internet[CONTAIN_NAME_MAX]; /**< the lab internet namespace */
	char dir[96];			 /**< scratch folder, removed at the end */
	contain_session_net sessions[LAB_MAX_SESSIONS];
} lab_state;

extern lab_state the_lab;

/** Set up the lab named `name` (for the scratch folder) with the
 *  addresses `addrs` (NULL-terminated) on the internet namespace's
 *  loopback. Without root it does nothing and returns 0 (tests skip);
 *  -1 on failure. Registers the cleanup for exit and signals. */
int lab_open(const char *name, const char *const *addrs);
/** Stop the packet counter, remove every session, the namespace, the
 *  blackhole routes and the scratch folder. Idempotent. */
void lab_close(void);

/** Skip the test when the lab is not there (not root). */
#define LAB_REQUIRE()               \
	do {                        \
		if (!the_lab.ready) \
			skip();     \
	} while (0)

/** Session `k` (< LAB_MAX_SESSIONS), registered for cleanup before it
 *  exists; with `upstream` its gateway is linked to the lab internet. Fails
 *  the test if it cannot be made. */
contain_session_net *lab_session_new(int k, bool upstream);
/** Remove session `k` and assert that its namespaces are gone. */
void lab_session_end(int k);

/** Track (or stop tracking) slot `k` for cleanup, for a test that fills
 *  the_lab.sessions[k] itself (a session some other process made). */
void lab_session_track(int k, bool tracked);

/** A folder `name` under the scratch folder into `out`. */
void lab_dir(char *out, size_t cap, const char *name);

/** Run `script` with /bin/bash in the inmate of `inmate_ns` (with CAP_NET_RAW,
 *  as `mamori sandbox run` does), stdout and stderr into `dir`, its stdout
 *  into `out` (NUL-terminated, may be NULL). Returns the exit code (128 +
 *  the signal when killed); fails the test if it could not start or timed
 *  out after `timeout_ms` (0: 30 s). */
int lab_inmate_sh(const char *inmate_ns, const char *dir, const char *script, char *out, size_t cap,
		  unsigned timeout_ms);

/** Wait up to 3 s for `*v` (a callback's counter) to reach `want`. */
void lab_wait_for(atomic_int *v, int want);

/** A TCP socket listening on addr:port inside the lab internet; -1 on
 *  failure. */
int lab_listen(const char *addr, uint16_t port);

/** Packets counted by the NFQUEUE rule of gateway namespace `gw_ns` (-1:
 *  no such rule). */
long lab_nfqueue_packets(const char *gw_ns);

/** The last test of a lab: close it and assert that no namespace of this
 *  test is left. */
void lab_close_nothing_left(void);

/** Called by the counter for every IPv4 packet that arrives on any
 *  interface of the lab internet (not those it sends). */
typedef void (*lab_packet_fn)(const uint8_t *ip, size_t len);
/** Start the counter thread (one per lab). */
int lab_count_start(lab_packet_fn fn);

#endif
