/* Placeholder: replaced by the subsystem that owns `mamori info`. */
#include <stdio.h>
#include "commands.h"
#include "mamori/base.h"

int cmd_info(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "mamori info: not built yet\n");
	return MAMORI_EXIT_FAILURE;
}
