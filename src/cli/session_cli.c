/*
 * One containment session for the CLI (see session_cli.h): options, the
 * session (src/contain/session.h), the inmate command or the wait, and the
 * report at the end.
 *
 * Signals: SIGINT, SIGTERM and SIGHUP go to one thread. The first cuts the
 * inmate off at once (the namespaces are removed) and wakes the main thread
 * through a pipe; the main thread then ends the session as usual (a
 * session_end event with reason "interrupted", the gateway stopped, the
 * report written) and exits with 128 + the signal. A second signal exits
 * at once.
 */
#include "session_cli.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "args.h"
#include "commands.h"
#include "mamori/base.h"
#include "netns.h"
#include "policy.h"
#include "sandbox.h"
#include "session.h"

const char session_cli_usage[] =
	"  --policy FILE          verdict rules (default: the built-in policy)\n"
	"  --session DIR          session folder (default: ./session-YYYYmmdd-HHMMSS)\n"
	"  --upstream-netns NAME  forward into this lab namespace\n"
	"  --upstream host        forward into the host's own network (a real deployment)\n"
	"  --upstream none        forward nothing: every flow is reflected (the default)\n"
	"  --db FILE              also store the events in this database\n"
	"  --json                 machine output (JSON) instead of the summary for people\n";

/* Shared with the signal thread. */
static struct {
	pthread_mutex_t lock;
	contain_session *session;
	int wake[2]; /* the signal thread writes, the main thread polls */
	atomic_int signal;
	sigset_t set;
} sc = { .lock = PTHREAD_MUTEX_INITIALIZER, .wake = { -1, -1 } };

static void *signal_main(void *arg)
{
	(void)arg;
	for (;;) {
		int sig = 0;
		if (sigwait(&sc.set, &sig) != 0)
			return NULL;
		pthread_mutex_lock(&sc.lock);
		contain_session_cut(sc.session);
		pthread_mutex_unlock(&sc.lock);
		if (atomic_exchange(&sc.signal, sig) != 0)
			_exit(128 + sig); /* the second one: no more waiting */
		fprintf(stderr, "mamori: %s: inmate cut off, ending the session\n", strsignal(sig));
		if (write(sc.wake[1], "x", 1) < 0) {
			/* The pipe cannot be full with one byte in it; nothing to do. */
		}
	}
}

/* "512M", "4G", "1048576" (bytes, at least 16 MiB), or "none". */
static bool parse_memory(uint64_t *out, const char *v)
{
	if (!strcmp(v, "none")) {
		*out = UINT64_MAX;
		return true;
	}
	char *end = NULL;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	if (errno != 0 || end == v || v[0] == '-')
		return false;
	unsigned shift = *end == 'K' ? 10 : *end == 'M' ? 20 : *end == 'G' ? 30 : 0;
	if (shift)
		end++;
	if (*end != '\0' || n > (UINT64_MAX >> 30))
		return false;
	*out = (uint64_t)n << shift;
	return *out >= (16ull << 20);
}

/* One option `opt` (with `val`, which may be NULL when there is none): the
 * number of arguments used (1 or 2), 0 when `opt` is not an option of
 * this command, or -1 after printing why it is wrong. */
static int session_cli_option(session_cli *c, const char *opt, const char *val)
{
	if (!strcmp(opt, "--json")) {
		c->json = true;
		return 1;
	}
	if (c->with_command && !strcmp(opt, "--no-raw")) {
		c->no_raw = true;
		return 1;
	}
	static const char *const with_value[] = { "--policy", "--session", "--upstream-netns", "--upstream",
						  "--db" };
	static const char *const command_only[] = { "--resolver", "--memory", "--timeout" };
	bool known = !c->with_command && !strcmp(opt, "--duration");
	for (size_t i = 0; i < sizeof with_value / sizeof with_value[0]; i++)
		known = known || !strcmp(opt, with_value[i]);
	for (size_t i = 0; c->with_command && i < sizeof command_only / sizeof command_only[0]; i++)
		known = known || !strcmp(opt, command_only[i]);
	if (!known)
		return 0;
	if (!val) {
		fprintf(stderr, "mamori %s: %s needs a value\n", c->cmd, opt);
		return -1;
	}
	if (!strcmp(opt, "--timeout")) {
		if (!cli_parse_u64(&c->seconds, val, 1, 86400, c->cmd, opt))
			return -1;
	} else if (!strcmp(opt, "--duration")) {
		if (!cli_parse_u64(&c->seconds, val, 1, 30ull * 86400u, c->cmd, opt))
			return -1;
	} else if (!strcmp(opt, "--memory")) {
		if (!parse_memory(&c->memory, val)) {
			fprintf(stderr,
				"mamori %s: --memory takes a size like 512M or 4G (at least 16M), or "
				"'none'\n",
				c->cmd);
			return -1;
		}
	} else if (!strcmp(opt, "--policy")) {
		c->policy_path = val;
	} else if (!strcmp(opt, "--session")) {
		c->session = val;
	} else if (!strcmp(opt, "--db")) {
		c->db_path = val;
	} else if (!strcmp(opt, "--resolver")) {
		struct in_addr a;
		if (inet_pton(AF_INET, val, &a) != 1) {
			fprintf(stderr, "mamori %s: --resolver needs an IPv4 address, not '%s'\n", c->cmd,
				val);
			return -1;
		}
		c->resolver = val;
	} else if (!strcmp(opt, "--upstream-netns")) {
		if (!contain_netns_name_ok(val) || !contain_netns_exists(val)) {
			fprintf(stderr, "mamori %s: no network namespace named '%s'\n", c->cmd, val);
			return -1;
		}
		if (c->upstream_host) {
			fprintf(stderr,
				"mamori %s: --upstream host and --upstream-netns exclude each other\n",
				c->cmd);
			return -1;
		}
		c->upstream_ns = val;
	} else { /* --upstream */
		if (!strcmp(val, "host")) {
			c->upstream_host = true;
		} else if (strcmp(val, "none") != 0) {
			fprintf(stderr,
				"mamori %s: --upstream takes 'host' or 'none'; a lab namespace is "
				"--upstream-netns NAME\n",
				c->cmd);
			return -1;
		}
		if (c->upstream_host && c->upstream_ns) {
			fprintf(stderr,
				"mamori %s: --upstream host and --upstream-netns exclude each other\n",
				c->cmd);
			return -1;
		}
	}
	return 2;
}

int session_cli_parse(session_cli *c, int argc, char **argv, int *pos, void (*usage)(FILE *))
{
	int i = *pos;
	while (i < argc && !(c->with_command && !strcmp(argv[i], "--"))) {
		const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(opt, "-h") || !strcmp(opt, "--help")) {
			usage(stdout);
			return MAMORI_EXIT_OK;
		}
		int used = session_cli_option(c, opt, val);
		if (used < 0)
			return MAMORI_EXIT_USAGE;
		if (used == 0) {
			fprintf(stderr, "mamori %s: unknown option '%s'\n", c->cmd, opt);
			usage(stderr);
			return MAMORI_EXIT_USAGE;
		}
		i += used;
	}
	*pos = i;
	return -1;
}

/* "nameserver ADDR" in SESSION/resolv.conf, for the inmate's mount. */
static int write_resolv(char *path, size_t cap, const char *dir, const char *resolver)
{
	if ((size_t)snprintf(path, cap, "%s/resolv.conf", dir) >= cap)
		return mamori_fail(MAMORI_EINVAL, "session path too long");
	char text[96];
	int n = snprintf(text, sizeof text, "# written by mamori for the inmate\nnameserver %s\n", resolver);
	return mamori_file_write_atomic(path, text, (size_t)n);
}

static void command_line(char *out, size_t cap, char **argv)
{
	size_t used = 0;
	out[0] = '\0';
	for (char **a = argv; a && *a && used + 1 < cap; a++) {
		int n = snprintf(out + used, cap - used, "%s%s", used ? " " : "", *a);
		if (n < 0)
			break;
		used += (size_t)n < cap - used ? (size_t)n : cap - used - 1;
	}
}

/* Policy, folder, database and resolv.conf; an exit code. */
static int prepare(const session_cli *c, const char *dir, contain_policy **policy, mamori_db **db,
		   char *resolv, size_t resolv_cap, bool with_command)
{
	const char *what = dir;
	int err = MAMORI_OK;
	if (c->policy_path)
		err = contain_policy_load(policy, (what = c->policy_path));
	if (err == MAMORI_OK)
		err = mamori_mkdir_p((what = dir));
	if (err == MAMORI_OK && c->db_path)
		err = mamori_db_open(db, (what = c->db_path));
	if (err == MAMORI_OK && with_command && c->resolver)
		err = write_resolv(resolv, resolv_cap, (what = dir), c->resolver);
	if (err == MAMORI_OK)
		return MAMORI_EXIT_OK;
	cli_report_error(c->cmd, what, err);
	return mamori_exit_code(err);
}

/* The gateway alone: announce the inmate namespace, then wait for a signal
 * or the duration. */
static void wait_gateway(const session_cli *c, contain_session *s, const char *dir)
{
	const contain_session_net *net = contain_session_network(s);
	char in_addr[INET_ADDRSTRLEN], gw_addr[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &net->inmate_addr, in_addr, sizeof in_addr);
	inet_ntop(AF_INET, &net->gateway_addr, gw_addr, sizeof gw_addr);
	if (c->json) {
		json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "session", dir, "inmate_netns",
				      net->inmate_ns, "inmate_addr", in_addr, "gateway_addr", gw_addr,
				      "gateway_netns", net->gateway_ns);
		mamori_json_write(stdout, j, false);
		json_decref(j);
	} else {
		printf("gateway    session %s: inmate namespace %s (%s via %s)\n"
		       "           run programs there with: ip netns exec %s CMD; stop with Ctrl-C\n",
		       dir, net->inmate_ns, in_addr, gw_addr, net->inmate_ns);
	}
	fflush(stdout);
	double deadline = c->seconds ? mamori_now() + (double)c->seconds : 0;
	/* A long job: the flows so far on the terminal (quiet when not one). */
	mamori_progress *progress = mamori_progress_start("gateway flows", 0);
	while (atomic_load(&sc.signal) == 0) {
		contain_gateway_stats now;
		contain_session_peek(s, &now);
		mamori_progress_set(progress, now.flows);
		int wait_ms = 1000;
		if (deadline) {
			double left = deadline - mamori_now();
			if (left <= 0)
				break;
			wait_ms = left < 1.0 ? (int)(left * 1000.0) + 1 : 1000;
		}
		struct pollfd p = { .fd = sc.wake[0], .events = POLLIN };
		if (poll(&p, 1, wait_ms) < 0 && errno != EINTR)
			break;
	}
	mamori_progress_finish(progress);
}

int session_cli_run(const session_cli *c, char **argv)
{
	mamori_db *db = NULL;
	contain_policy *policy = NULL;
	contain_session *s = NULL;
	int rc = MAMORI_EXIT_FAILURE, err;
	char dir[1024], resolv[1100];

	if (geteuid() != 0) {
		fprintf(stderr, "mamori %s: needs root (network namespaces)\n", c->cmd);
		return MAMORI_EXIT_USAGE;
	}
	if (c->session) {
		snprintf(dir, sizeof dir, "%s", c->session);
	} else {
		time_t now = time(NULL);
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(dir, sizeof dir, "session-%Y%m%d-%H%M%S", &tm);
	}
	if ((rc = prepare(c, dir, &policy, &db, resolv, sizeof resolv, argv != NULL)) != MAMORI_EXIT_OK)
		goto done;
	rc = MAMORI_EXIT_FAILURE;

	/* Signals go to one thread only, from before the namespaces exist. */
	if (pipe2(sc.wake, O_CLOEXEC) != 0) {
		fprintf(stderr, "mamori %s: pipe: %s\n", c->cmd, strerror(errno));
		goto done;
	}
	sigemptyset(&sc.set);
	sigaddset(&sc.set, SIGINT);
	sigaddset(&sc.set, SIGTERM);
	sigaddset(&sc.set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sc.set, NULL);
	pthread_t sig_thread;
	if (pthread_create(&sig_thread, NULL, signal_main, NULL) != 0) {
		fprintf(stderr, "mamori %s: cannot start the signal thread\n", c->cmd);
		goto done;
	}
	pthread_detach(sig_thread);

	char cmdline[1024];
	command_line(cmdline, sizeof cmdline, argv);
	contain_session_opts so = { .dir = dir,
				    .policy = policy,
				    .policy_name = c->policy_path,
				    .upstream_netns = c->upstream_ns,
				    .upstream_host = c->upstream_host,
				    .db = db,
				    .inmate = argv ? cmdline : "(gateway only)" };
	contain_session *started = NULL;
	if ((err = contain_session_start(&started, &so)) != MAMORI_OK) {
		cli_report_error(c->cmd, "session", err);
		rc = mamori_exit_code(err);
		goto done;
	}
	pthread_mutex_lock(&sc.lock);
	s = sc.session = started;
	pthread_mutex_unlock(&sc.lock);
	if (atomic_load(&sc.signal) != 0)
		contain_session_cut(s); /* a signal came while the session started */

	const char *reason = "stopped";
	int code = -2;
	contain_sandbox_result res = { 0 };
	if (argv) {
		contain_sandbox_config sbc = { .netns = contain_session_network(s)->inmate_ns,
					       .session_dir = dir,
					       .argv = argv,
					       .timeout_ms = (unsigned)c->seconds * 1000u,
					       .resolv_conf = c->resolver ? resolv : NULL,
					       .raw_sockets = !c->no_raw,
					       .address_space = c->memory,
					       .cancel_fd = sc.wake[0] };
		if (atomic_load(&sc.signal) == 0)
			err = contain_sandbox_run(&res, &sbc);
		else
			res.cancelled = true;
		reason = err != MAMORI_OK ? "not_started"
			 : res.cancelled  ? "interrupted"
			 : res.timed_out  ? "timeout"
			 : res.exited	  ? "exited"
					  : "signal";
		code = err != MAMORI_OK ? -1 : res.exited ? res.exit_code : 128 + res.term_signal;
	} else {
		wait_gateway(c, s, dir);
		reason = atomic_load(&sc.signal) ? "interrupted" : "duration";
	}
	pthread_mutex_lock(&sc.lock);
	sc.session = NULL;
	pthread_mutex_unlock(&sc.lock);
	contain_gateway_stats st;
	contain_session_end(s, reason, code, &st);
	s = NULL;
	if (err != MAMORI_OK) {
		cli_report_error(c->cmd, argv[0], err);
		rc = mamori_exit_code(err);
		goto done;
	}
	if (!c->json) {
		if (argv)
			printf("inmate     %s: %s %d after %.1f s\n", argv[0], reason, code,
			       res.wall_seconds);
		printf("gateway    %llu flows: %llu forwarded, %llu reflected, %llu dropped; %llu refused "
		       "over the cap; %llu events, %llu packets captured\n",
		       (unsigned long long)st.flows, (unsigned long long)st.forwarded,
		       (unsigned long long)st.reflected, (unsigned long long)st.dropped,
		       (unsigned long long)st.refused_over_cap, (unsigned long long)st.events,
		       (unsigned long long)st.capture_packets);
		fflush(stdout);
	}
	/* The report is the one `mamori contain report` writes and prints. */
	char *report_argv[] = { "contain", "report", dir, c->json ? "--json" : NULL, NULL };
	rc = cmd_contain(c->json ? 4 : 3, report_argv);
	if (atomic_load(&sc.signal) != 0)
		rc = 128 + atomic_load(&sc.signal);
done:
	contain_session_end(s, "error", -2, NULL);
	contain_policy_free(policy);
	mamori_db_free(db);
	return rc;
}
