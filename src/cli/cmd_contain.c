/*
 * `mamori contain`: the containment gateway on its own.
 *
 * - `contain run [SESSION OPTIONS] [--duration S]` starts a session's
 *   namespaces and gateway and keeps them until a signal (or S seconds),
 *   so that another tool (the emulator, a VM, `ip netns exec`) puts what it
 *   runs into the inmate namespace it prints; then writes the report.
 * - `contain report SESSION [--json]`: the communication features of a
 *   session from its events (SESSION/events.jsonl, see
 *   docs/contain-events.md). Writes SESSION/report.json and
 *   SESSION/report.svg and prints a summary for people (or the JSON).
 * - `contain cleanup SESSION`: remove what a session that was killed
 *   (SIGKILL, a crash) left behind, from its SESSION/net.txt.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "args.h"
#include "commands.h"
#include "mamori/base.h"
#include "mamori/contain.h"
#include "netns.h"
#include "session_cli.h"

static void contain_usage(FILE *f)
{
	fprintf(f,
		"usage: mamori contain run [OPTIONS] [--duration S]\n"
		"  Start a containment session: an inmate network namespace behind the gateway.\n"
		"  Prints the inmate namespace; put what should run behind the gateway there (for\n"
		"  example `ip netns exec NAME CMD`). Runs until SIGINT/SIGTERM or S seconds, then\n"
		"  writes the report.\n"
		"%s"
		"  --duration S           stop after S seconds (default: run until a signal)\n"
		"usage: mamori contain report SESSION [--json]\n"
		"  Read SESSION/events.jsonl and write SESSION/report.json (C&C endpoints with\n"
		"  protocol and identifiers, downloads with hashes, spam, floods, scans, DNS,\n"
		"  destinations) and SESSION/report.svg (a timeline of connections per destination\n"
		"  coloured by verdict, and a graph of the destinations). Prints a summary, or the\n"
		"  JSON with --json.\n"
		"usage: mamori contain cleanup SESSION\n"
		"  Remove the namespaces of a session that was killed, from SESSION/net.txt.\n",
		session_cli_usage);
}

/* The sample chose these strings (nicks, URIs, hosts): only printable
 * ASCII reaches the terminal, so no escape sequence can. */
static const char *safe(const json_t *s, char *buf, size_t cap)
{
	const char *t = json_string_value(s);
	size_t n = 0;
	for (; t && *t && n + 1 < cap; t++, n++)
		buf[n] = (*t >= 0x20 && *t < 0x7f) ? *t : '?';
	buf[n] = '\0';
	return buf;
}

static void print_list(const char *label, const json_t *arr)
{
	size_t i;
	json_t *v;
	char b[256];
	printf("%s", label);
	json_array_foreach(arr, i, v) printf("%s%s", i ? ", " : " ", safe(v, b, sizeof(b)));
	printf("\n");
}

static void print_summary(const json_t *j, const char *dir)
{
	const json_t *flows = json_object_get(j, "flows");
	char b1[256], b2[256];
	printf("session    %s: %lld flows", safe(json_object_get(j, "session"), b1, sizeof(b1)),
	       (long long)json_integer_value(json_object_get(flows, "total")));
	const char *k;
	json_t *v;
	json_object_foreach(json_object_get(flows, "by_verdict"), k, v)
	{
		printf(", %s %lld", k, (long long)json_integer_value(v));
	}
	printf("\n");
	size_t i;
	json_array_foreach(json_object_get(j, "cnc"), i, v)
	{
		const char *proto = json_string_value(json_object_get(v, "protocol"));
		if (!strcmp(proto, "irc")) {
			printf("c&c irc    %s (%s)\n", safe(json_object_get(v, "server"), b1, sizeof(b1)),
			       safe(json_object_get(v, "verdict"), b2, sizeof(b2)));
			print_list("  nicks   ", json_object_get(v, "nicks"));
			print_list("  channels", json_object_get(v, "channels"));
		} else {
			printf("c&c http   %s (%s), %lld requests\n",
			       safe(json_object_get(v, "host"), b1, sizeof(b1)),
			       safe(json_object_get(v, "dst"), b2, sizeof(b2)),
			       (long long)json_integer_value(json_object_get(v, "requests")));
			print_list("  uris    ", json_object_get(v, "uri_patterns"));
		}
	}
	json_array_foreach(json_object_get(j, "downloads"), i, v)
	{
		printf("download   %s sha256 %s\n", safe(json_object_get(v, "url"), b1, sizeof(b1)),
		       safe(json_object_get(v, "sha256"), b2, sizeof(b2)));
	}
	const json_t *spam = json_object_get(j, "spam");
	if (json_integer_value(json_object_get(spam, "messages")))
		printf("spam       %lld messages to %lld recipients (%lld distinct)\n",
		       (long long)json_integer_value(json_object_get(spam, "messages")),
		       (long long)json_integer_value(json_object_get(spam, "recipients_total")),
		       (long long)json_integer_value(json_object_get(spam, "recipients_distinct")));
	const char *kinds[] = { "floods", "scans" };
	for (int kk = 0; kk < 2; kk++) {
		json_array_foreach(json_object_get(j, kinds[kk]), i, v)
		{
			/* "flood      203.0.113.66: pkt-rate 1192 in 1.0 s (drop)" */
			const json_t *targets = json_object_get(v, "targets");
			json_int_t window_ms = json_integer_value(json_object_get(v, "window_ms"));
			printf("%-10s", kk ? "scan" : "flood");
			print_list("", targets);
			printf("           %s %lld in %.1f s, %.1f/s (%s)\n",
			       json_string_value(json_object_get(v, "measure"))
				       ? safe(json_object_get(v, "measure"), b1, sizeof(b1))
				       : "count",
			       (long long)json_integer_value(json_object_get(v, "count")),
			       window_ms > 0 ? (double)window_ms / 1000.0 : 1.0,
			       json_real_value(json_object_get(v, "rate")),
			       safe(json_object_get(v, "verdict"), b2, sizeof(b2)));
		}
	}
	json_array_foreach(json_object_get(j, "dns"), i, v)
	{
		printf("dns        %s ->", safe(json_object_get(v, "qname"), b1, sizeof(b1)));
		print_list("", json_object_get(v, "answers"));
		if (json_is_true(json_object_get(v, "sinkholed")))
			printf("           (the fake resolver answered)\n");
	}
	printf("report     %s/report.json  %s/report.svg\n", dir, dir);
}

static int contain_report_cmd(const char *dir, bool as_json)
{
	char events[4096], out_json[4096], out_svg[4096];
	if ((size_t)snprintf(events, sizeof(events), "%s/events.jsonl", dir) >= sizeof(events) ||
	    (size_t)snprintf(out_json, sizeof(out_json), "%s/report.json", dir) >= sizeof(out_json) ||
	    (size_t)snprintf(out_svg, sizeof(out_svg), "%s/report.svg", dir) >= sizeof(out_svg)) {
		fprintf(stderr, "mamori contain: session path too long\n");
		return MAMORI_EXIT_USAGE;
	}
	mamori_contain_report *r = NULL;
	json_t *j = NULL;
	FILE *f = NULL;
	int err = mamori_contain_report_load(&r, events);
	int rc = MAMORI_EXIT_OK;
	if (err != MAMORI_OK) {
		cli_report_error("contain", events, err);
		return mamori_exit_code(err);
	}
	j = mamori_contain_report_json(r);
	if (!j || (err = mamori_json_write_path(out_json, j)) != MAMORI_OK) {
		cli_report_error("contain", out_json, j ? err : MAMORI_ENOMEM);
		rc = MAMORI_EXIT_FAILURE;
		goto done;
	}
	f = fopen(out_svg, "w");
	if (!f || mamori_contain_report_svg(r, f) != MAMORI_OK || fclose(f) != 0) {
		f = NULL;
		fprintf(stderr, "mamori contain: %s: cannot write the SVG\n", out_svg);
		rc = MAMORI_EXIT_FAILURE;
		goto done;
	}
	f = NULL;
	if (as_json)
		rc = mamori_json_write(stdout, j, false) == MAMORI_OK ? MAMORI_EXIT_OK : MAMORI_EXIT_FAILURE;
	else
		print_summary(j, dir);
done:
	if (f)
		fclose(f);
	json_decref(j);
	mamori_contain_report_free(r);
	return rc;
}

static int contain_run_cmd(int argc, char **argv)
{
	session_cli c = { .cmd = "contain" };
	int i = 2;
	int rc = session_cli_parse(&c, argc, argv, &i, contain_usage);
	if (rc >= 0)
		return rc;
	return session_cli_run(&c, NULL);
}

static int contain_cleanup_cmd(const char *dir)
{
	char path[4200];
	if ((size_t)snprintf(path, sizeof path, "%s/net.txt", dir) >= sizeof path) {
		fprintf(stderr, "mamori contain: session path too long\n");
		return MAMORI_EXIT_USAGE;
	}
	if (geteuid() != 0) {
		fprintf(stderr, "mamori contain: needs root (network namespaces)\n");
		return MAMORI_EXIT_USAGE;
	}
	int err = contain_session_net_cleanup_file(path);
	if (err != MAMORI_OK) {
		cli_report_error("contain", path, err);
		return mamori_exit_code(err);
	}
	printf("cleanup    %s: the session's namespaces are gone\n", dir);
	return MAMORI_EXIT_OK;
}

int cmd_contain(int argc, char **argv)
{
	const char *sub = NULL, *dir = NULL;
	bool as_json = false;
	if (argc >= 2 && !strcmp(argv[1], "run"))
		return contain_run_cmd(argc, argv);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			contain_usage(stdout);
			return MAMORI_EXIT_OK;
		} else if (!strcmp(argv[i], "--json")) {
			as_json = true;
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "mamori contain: unknown option '%s'\n", argv[i]);
			contain_usage(stderr);
			return MAMORI_EXIT_USAGE;
		} else if (!sub) {
			sub = argv[i];
		} else if (!dir) {
			dir = argv[i];
		} else {
			contain_usage(stderr);
			return MAMORI_EXIT_USAGE;
		}
	}
	if (sub && dir && !strcmp(sub, "report"))
		return contain_report_cmd(dir, as_json);
	if (sub && dir && !strcmp(sub, "cleanup") && !as_json)
		return contain_cleanup_cmd(dir);
	contain_usage(stderr);
	return MAMORI_EXIT_USAGE;
}
