/* Placeholder: replaced by the subsystem that owns `mamori compare`. */
#include <stdio.h>
#include "commands.h"
#include "mamori/base.h"

int cmd_compare(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "mamori compare: not built yet\n");
	return MAMORI_EXIT_FAILURE;
}
