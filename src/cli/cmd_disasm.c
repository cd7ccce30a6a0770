/* Placeholder: replaced by the subsystem that owns `mamori disasm`. */
#include <stdio.h>
#include "commands.h"
#include "mamori/base.h"

int cmd_disasm(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "mamori disasm: not built yet\n");
	return MAMORI_EXIT_FAILURE;
}
