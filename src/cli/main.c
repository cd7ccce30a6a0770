/*
 * mamori: one thin dispatcher. main() looks the command up in a table of
 * {name, fn, summary}; each command parses its own options and calls the
 * libraries, so all logic is reachable from tests without the CLI.
 */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "mamori/base.h"

typedef struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
} command;

static const command commands[] = {
	{ "info", cmd_info, "parse a PE or ELF file and print its structure as JSON" },
	{ "disasm", cmd_disasm, "disassemble a PE or ELF file and show each instruction with its token" },
	{ "compare", cmd_compare, "similarity of two samples with their shared and changed code" },
	{ "classify", cmd_classify, "cluster samples into families (JSON, SVG dendrogram, Newick)" },
	{ "contain", cmd_contain,
	  "containment session report: C&C, downloads, spam, floods, scans (JSON, SVG)" },
	{ "sandbox", cmd_sandbox, "run a command behind the containment gateway (sandbox run -- CMD ...)" },
	{ "unpack", cmd_unpack, "emulate a packed PE and dump its unpacked image (OEP, rebuilt imports)" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: mamori <command> [options]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n'mamori <command> --help' shows a command's options.\n"
		   "exit codes: 0 ok, 1 internal error, 2 usage, 3 bad input, 4 partial, 5 limit\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return MAMORI_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return MAMORI_EXIT_OK;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("mamori %s\n", MAMORI_VERSION);
		return MAMORI_EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "mamori: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return MAMORI_EXIT_USAGE;
}
