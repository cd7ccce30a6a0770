/*
 * `mamori sandbox run [--policy FILE] [--session DIR] [--upstream-netns NAME]
 * [--timeout S] [--db FILE] -- CMD ARGS...`: one containment session. Creates the
 * session's namespaces, starts the gateway (src/contain/gateway.h), runs
 * CMD in the inmate namespace, stops the gateway, removes the namespaces
 * and writes the report (SESSION/report.json, report.svg) as `mamori
 * contain report` does.
 *
 * The upstream is always chosen explicitly: `--upstream-netns NAME` forwards
 * into a lab namespace; with no upstream nothing is forwarded and every flow
 * is reflected. `--upstream host` (the host's own network) is refused in
 * this build. The namespaces are removed on every way out: normal end,
 * errors, and SIGINT/SIGTERM (a signal thread removes them, which also cuts
 * the inmate off, then exits; the inmate dies with us by PDEATHSIG).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "args.h"
#include "commands.h"
#include "gateway.h"
#include "mamori/base.h"
#include "netns.h"
#include "policy.h"
#include "sandbox.h"

#define SANDBOX_TCP_PORT 15001
#define SANDBOX_UDP_PORT 15053
#define SANDBOX_NFQUEUE	 7

static void sandbox_usage(FILE *f)
{
	fprintf(f, "usage: mamori sandbox run [--policy FILE] [--session DIR] [--upstream-netns NAME]\n"
		   "                          [--timeout S] [--db FILE] -- CMD ARGS...\n"
		   "  Run CMD in a fresh inmate network namespace behind the containment gateway.\n"
		   "  --policy FILE          verdict rules (default: the built-in policy)\n"
		   "  --session DIR          session folder (default: ./session-YYYYmmdd-HHMMSS)\n"
		   "  --upstream-netns NAME  forward into this lab namespace; without it nothing is\n"
		   "                         forwarded and every flow is reflected\n"
		   "  --timeout S            wall-clock limit of CMD in seconds (default 60)\n"
		   "  --db FILE              also store the events in this database\n"
		   "  Writes SESSION/events.jsonl, inmate.pcap, mail/, stdout.txt, stderr.txt,\n"
		   "  report.json and report.svg.\n");
}

/* What the signal thread needs to clean up after an interrupt. */
static struct {
	contain_session_net net;
	pthread_mutex_t lock;
	bool live;
	sigset_t set;
} sb = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void net_destroy_once(void)
{
	pthread_mutex_lock(&sb.lock);
	if (sb.live)
		contain_session_net_destroy(&sb.net);
	sb.live = false;
	pthread_mutex_unlock(&sb.lock);
}

static void *signal_main(void *arg)
{
	(void)arg;
	int sig = 0;
	if (sigwait(&sb.set, &sig) != 0)
		return NULL;
	/* Remove the namespaces first: the inmate is cut off at once. */
	net_destroy_once();
	fprintf(stderr, "mamori sandbox: %s: namespaces removed, session aborted\n", strsignal(sig));
	_exit(128 + sig);
}

static int sandbox_run(const char *policy_path, const char *session, const char *upstream_ns,
		       const char *db_path, unsigned timeout_s, char **cmd)
{
	mamori_db *db = NULL;
	int rc = MAMORI_EXIT_FAILURE, err;
	contain_policy *policy = NULL;
	contain_gateway *gw = NULL;
	char dir[1024], path[1200];
	pthread_t sig_thread;

	if (session) {
		snprintf(dir, sizeof dir, "%s", session);
	} else {
		time_t now = time(NULL);
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(dir, sizeof dir, "session-%Y%m%d-%H%M%S", &tm);
	}
	if (policy_path && (err = contain_policy_load(&policy, policy_path)) != MAMORI_OK) {
		cli_report_error("sandbox", policy_path, err);
		return mamori_exit_code(err);
	}
	if ((err = mamori_mkdir_p(dir)) != MAMORI_OK) {
		cli_report_error("sandbox", dir, err);
		contain_policy_free(policy);
		return mamori_exit_code(err);
	}
	if (db_path && (err = mamori_db_open(&db, db_path)) != MAMORI_OK) {
		cli_report_error("sandbox", db_path, err);
		contain_policy_free(policy);
		return mamori_exit_code(err);
	}

	/* Signals go to one thread only, from before the namespaces exist. */
	sigemptyset(&sb.set);
	sigaddset(&sb.set, SIGINT);
	sigaddset(&sb.set, SIGTERM);
	sigaddset(&sb.set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sb.set, NULL);
	if (pthread_create(&sig_thread, NULL, signal_main, NULL) != 0) {
		fprintf(stderr, "mamori sandbox: cannot start the signal thread\n");
		goto done;
	}
	pthread_detach(sig_thread);

	contain_netns_config cfg = { .tag = NULL,
				     .slot = (uint32_t)getpid() % CONTAIN_SLOT_COUNT,
				     .upstream_netns = upstream_ns,
				     .tcp_port = SANDBOX_TCP_PORT,
				     .udp_port = SANDBOX_UDP_PORT,
				     .nfqueue = SANDBOX_NFQUEUE };
	pthread_mutex_lock(&sb.lock);
	sb.live = true;
	err = contain_session_net_create(&sb.net, &cfg);
	pthread_mutex_unlock(&sb.lock);
	if (err != MAMORI_OK) {
		cli_report_error("sandbox", "session namespaces", err);
		rc = mamori_exit_code(err);
		goto done;
	}
	snprintf(path, sizeof path, "%s/net.txt", dir);
	contain_session_net_record(&sb.net, path);

	contain_gateway_opts go = {
		.net = &sb.net, .policy = policy, .session_dir = dir, .upstream_netns = upstream_ns, .db = db
	};
	if ((err = contain_gateway_start(&gw, &go)) != MAMORI_OK) {
		cli_report_error("sandbox", "gateway", err);
		rc = mamori_exit_code(err);
		goto done;
	}
	char cmdline[1024] = "";
	size_t used = 0;
	for (char **a = cmd; *a && used + 1 < sizeof cmdline; a++) {
		int n = snprintf(cmdline + used, sizeof cmdline - used, "%s%s", used ? " " : "", *a);
		if (n < 0)
			break;
		used += (size_t)n < sizeof cmdline - used ? (size_t)n : sizeof cmdline - used - 1;
	}
	char upstream[64];
	snprintf(upstream, sizeof upstream, upstream_ns ? "netns:%s" : "none",
		 upstream_ns ? upstream_ns : "");
	json_t *ev = json_pack("{s:s, s:s, s:s}", "inmate", cmdline, "upstream", upstream, "policy",
			       policy_path ? policy_path : "default");
	mamori_event_emit(contain_gateway_eventlog(gw), "session_start", ev);
	json_decref(ev);

	contain_sandbox_config sc = {
		.netns = sb.net.inmate_ns, .session_dir = dir, .argv = cmd, .timeout_ms = timeout_s * 1000u
	};
	contain_sandbox_result res = { 0 };
	err = contain_sandbox_run(&res, &sc);
	const char *reason = err != MAMORI_OK ? "not_started"
			     : res.timed_out  ? "timeout"
			     : res.exited     ? "exited"
					      : "signal";
	int code = err != MAMORI_OK ? -1 : res.exited ? res.exit_code : 128 + res.term_signal;
	ev = json_pack("{s:i, s:s}", "exit_code", code, "reason", reason);
	mamori_event_emit(contain_gateway_eventlog(gw), "session_end", ev);
	json_decref(ev);
	if (err != MAMORI_OK) {
		cli_report_error("sandbox", cmd[0], err);
		rc = mamori_exit_code(err);
		goto done;
	}
	contain_gateway_stats st;
	contain_gateway_stop(gw, &st);
	gw = NULL;
	net_destroy_once();
	printf("inmate     %s: %s %d after %.1f s\n", cmd[0], reason, code, res.wall_seconds);
	printf("gateway    %llu flows: %llu forwarded, %llu reflected, %llu dropped; %llu events, %llu "
	       "packets "
	       "captured\n",
	       (unsigned long long)st.flows, (unsigned long long)st.forwarded,
	       (unsigned long long)st.reflected, (unsigned long long)st.dropped,
	       (unsigned long long)st.events, (unsigned long long)st.capture_packets);
	fflush(stdout);
	/* The report is the one `mamori contain report` writes and prints. */
	char *report_argv[] = { "contain", "report", dir, NULL };
	rc = cmd_contain(3, report_argv);
done:
	contain_gateway_stop(gw, NULL);
	net_destroy_once();
	contain_policy_free(policy);
	mamori_db_free(db);
	return rc;
}

int cmd_sandbox(int argc, char **argv)
{
	const char *policy = NULL, *session = NULL, *upstream_ns = NULL, *db = NULL;
	uint64_t timeout = 60;
	int i = 1;
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		sandbox_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? MAMORI_EXIT_USAGE : MAMORI_EXIT_OK;
	}
	if (strcmp(argv[1], "run") != 0) {
		fprintf(stderr, "mamori sandbox: unknown subcommand '%s'\n", argv[1]);
		sandbox_usage(stderr);
		return MAMORI_EXIT_USAGE;
	}
	for (i = 2; i < argc && strcmp(argv[i], "--") != 0; i++) {
		const char *opt = argv[i];
		if (!strcmp(opt, "-h") || !strcmp(opt, "--help")) {
			sandbox_usage(stdout);
			return MAMORI_EXIT_OK;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "mamori sandbox: %s needs a value\n", opt);
			return MAMORI_EXIT_USAGE;
		}
		const char *val = argv[++i];
		if (!strcmp(opt, "--policy")) {
			policy = val;
		} else if (!strcmp(opt, "--db")) {
			db = val;
		} else if (!strcmp(opt, "--session")) {
			session = val;
		} else if (!strcmp(opt, "--upstream-netns")) {
			if (!contain_netns_name_ok(val) || !contain_netns_exists(val)) {
				fprintf(stderr, "mamori sandbox: no network namespace named '%s'\n", val);
				return MAMORI_EXIT_USAGE;
			}
			upstream_ns = val;
		} else if (!strcmp(opt, "--upstream")) {
			fprintf(stderr,
				"mamori sandbox: --upstream %s is not supported yet: use --upstream-netns "
				"NAME "
				"(a lab namespace), or no upstream to reflect everything\n",
				val);
			return MAMORI_EXIT_USAGE;
		} else if (!strcmp(opt, "--timeout")) {
			if (!cli_parse_u64(&timeout, val, 1, 86400, "sandbox", "--timeout"))
				return MAMORI_EXIT_USAGE;
		} else {
			fprintf(stderr, "mamori sandbox: unknown option '%s'\n", opt);
			sandbox_usage(stderr);
			return MAMORI_EXIT_USAGE;
		}
	}
	if (i >= argc || i + 1 >= argc) {
		fprintf(stderr, "mamori sandbox: no command: put it after '--'\n");
		sandbox_usage(stderr);
		return MAMORI_EXIT_USAGE;
	}
	if (geteuid() != 0) {
		fprintf(stderr, "mamori sandbox: needs root (network namespaces)\n");
		return MAMORI_EXIT_USAGE;
	}
	return sandbox_run(policy, session, upstream_ns, db, (unsigned)timeout, argv + i + 1);
}
