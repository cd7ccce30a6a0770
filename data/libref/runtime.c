/*
 * A trivial program whose only purpose is to pull the toolchain's runtime
 * into a binary: start-up code, CRT helpers, and the compiler's helper
 * functions for 64-bit arithmetic and float conversion on 32-bit targets.
 * mamori learns that code as "known library code" (src/classify/libcode.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc < 4)
		return 0;
	unsigned long long a = strtoull(argv[1], NULL, 10), b = strtoull(argv[2], NULL, 10);
	long long c = strtoll(argv[3], NULL, 10);
	double d = (double)a / 3.0;
	printf("%llu %llu %lld %lld %f %llu %lld\n", a / b, a % b, c / (long long)b, c % (long long)b, d,
	       (unsigned long long)d, (long long)(d * -1.0));
	puts(strchr(argv[1], 'x') ? "x" : "-");
	return (int)strlen(argv[0]);
}
