/*
 * The commands of the `mamori` CLI. Each parses its own options and calls
 * the libraries; it returns a process exit code (MAMORI_EXIT_* in
 * mamori/base.h). The table in main.c lists them.
 */
#ifndef MAMORI_CLI_COMMANDS_H
#define MAMORI_CLI_COMMANDS_H

int cmd_info(int argc, char **argv);
int cmd_disasm(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_contain(int argc, char **argv);
int cmd_unpack(int argc, char **argv);
int cmd_sandbox(int argc, char **argv);

#endif
