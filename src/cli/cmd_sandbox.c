/*
 * `mamori sandbox run [SESSION OPTIONS] [--timeout S] [--resolver ADDR] --
 * CMD ARGS...`: one containment session with CMD as the inmate. Creates the
 * session's namespaces, starts the gateway (src/contain/gateway.h), runs CMD
 * in the inmate namespace, stops the gateway, removes the namespaces and
 * writes the report (SESSION/report.json, report.svg) as `mamori contain
 * report` does. The session itself is session_cli.c, shared with `mamori
 * contain run`.
 *
 * The upstream is always chosen explicitly: `--upstream-netns NAME` forwards
 * into a lab namespace, `--upstream host` into the host's own network; with
 * neither nothing is forwarded and every flow is reflected.
 */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "mamori/base.h"
#include "session_cli.h"

static void sandbox_usage(FILE *f)
{
	fprintf(f,
		"usage: mamori sandbox run [OPTIONS] -- CMD ARGS...\n"
		"  Run CMD in a fresh inmate network namespace behind the containment gateway.\n"
		"%s"
		"  --timeout S            wall-clock limit of CMD in seconds (default 60)\n"
		"  --resolver ADDR        the inmate's /etc/resolv.conf names this DNS server\n"
		"  --memory SIZE|none     CMD's address space (default 1G; 'none': no limit, e.g. for\n"
		"                         sanitizer builds)\n"
		"  --no-raw               CMD gets no raw sockets (by default it keeps CAP_NET_RAW,\n"
		"                         and only that, so that floods and pings show)\n"
		"  Writes SESSION/events.jsonl, inmate.pcap, mail/, store/, stdout.txt, stderr.txt,\n"
		"  report.json and report.svg.\n",
		session_cli_usage);
}

int cmd_sandbox(int argc, char **argv)
{
	session_cli c = { .cmd = "sandbox", .with_command = true, .seconds = 60 };
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		sandbox_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? MAMORI_EXIT_USAGE : MAMORI_EXIT_OK;
	}
	if (strcmp(argv[1], "run") != 0) {
		fprintf(stderr, "mamori sandbox: unknown subcommand '%s'\n", argv[1]);
		sandbox_usage(stderr);
		return MAMORI_EXIT_USAGE;
	}
	int i = 2;
	int rc = session_cli_parse(&c, argc, argv, &i, sandbox_usage);
	if (rc >= 0)
		return rc;
	if (i >= argc || i + 1 >= argc) {
		fprintf(stderr, "mamori sandbox: no command: put it after '--'\n");
		sandbox_usage(stderr);
		return MAMORI_EXIT_USAGE;
	}
	return session_cli_run(&c, argv + i + 1);
}
