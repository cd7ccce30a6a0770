/*
 * Replays files through LLVMFuzzerTestOneInput without libFuzzer, so that
 * `meson test` runs every fuzz target over its corpus (and under ASan in a
 * sanitized build). Arguments are files or directories (not recursive).
 * Each input is an exact-size heap copy so over-reads are caught.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	uint8_t *buf = NULL;
	int rc = -1;

	if (!f) {
		fprintf(stderr, "standalone_driver: cannot open %s\n", path);
		return -1;
	}
	if (fstat(fileno(f), &st) < 0 || st.st_size < 0 || st.st_size > (64 << 20))
		goto done;
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf || fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size)
		goto done;
	LLVMFuzzerTestOneInput(buf, (size_t)st.st_size);
	rc = 0;
done:
	if (rc < 0)
		fprintf(stderr, "standalone_driver: cannot read %s\n", path);
	free(buf);
	fclose(f);
	return rc;
}

int main(int argc, char **argv)
{
	size_t n = 0, bad = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "standalone_driver: no such file or directory: %s\n", argv[i]);
			bad++;
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			bad += run_file(argv[i]) < 0;
			n++;
			continue;
		}
		DIR *d = opendir(argv[i]);
		if (!d) {
			bad++;
			continue;
		}
		struct dirent *e;
		while ((e = readdir(d))) {
			char path[4096];
			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
			if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
				continue;
			bad += run_file(path) < 0;
			n++;
		}
		closedir(d);
	}
	printf("replayed %zu inputs, %zu unreadable\n", n, bad);
	return bad || n == 0 ? 1 : 0;
}
