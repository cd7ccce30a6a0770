/* Placeholder: replaced by the subsystem that owns `mamori classify`. */
#include <stdio.h>
#include "commands.h"
#include "mamori/base.h"

int cmd_classify(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "mamori classify: not built yet\n");
	return MAMORI_EXIT_FAILURE;
}
