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
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
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

int cmd_sandbox(int argc, char **argv)
{
	session_cli c = { .cmd = "sandbox", .seconds = 60 };
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
	for (i = 2; i < argc && strcmp(argv[i], "--") != 0;) {
		const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(opt, "-h") || !strcmp(opt, "--help")) {
			sandbox_usage(stdout);
			return MAMORI_EXIT_OK;
		}
		int used = session_cli_option(&c, opt, val);
		if (used < 0)
			return MAMORI_EXIT_USAGE;
		if (used == 0 && !strcmp(opt, "--memory")) {
			if (!val || !parse_memory(&c.memory, val)) {
				fprintf(stderr, "mamori sandbox: --memory takes a size like 512M or 4G (at "
						"least 16M), or 'none'\n");
				return MAMORI_EXIT_USAGE;
			}
			used = 2;
		}
		if (used == 0 && !strcmp(opt, "--no-raw")) {
			c.no_raw = true;
			used = 1;
		}
		if (used == 0 && !strcmp(opt, "--timeout")) {
			if (!val) {
				fprintf(stderr, "mamori sandbox: --timeout needs a value\n");
				return MAMORI_EXIT_USAGE;
			}
			if (!cli_parse_u64(&c.seconds, val, 1, 86400, "sandbox", "--timeout"))
				return MAMORI_EXIT_USAGE;
			used = 2;
		}
		if (used == 0) {
			fprintf(stderr, "mamori sandbox: unknown option '%s'\n", opt);
			sandbox_usage(stderr);
			return MAMORI_EXIT_USAGE;
		}
		i += used;
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
	return session_cli_run(&c, argv + i + 1);
}
