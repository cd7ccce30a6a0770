/*
 * Tests of the ground-truth readers and the precision/recall arithmetic of
 * disasm-eval (bench/disasm/dtruth.c). Every expected count is worked out
 * by hand in the comment next to it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "dtruth.h"
#include "mamori/base.h"

#define EPS  1e-9
#define N(a) (sizeof(a) / sizeof((a)[0]))

static void test_score_known_only(void **state)
{
	(void)state;
	/* Known bytes: [0x100,0x110) and [0x200,0x208). Truth starts 0x100, 0x103, 0x108, 0x200 and
	 * 0x300 (outside the known bytes: ignored). Predicted: 0x100 (tp), 0x101 (fp), 0x108 (tp),
	 * 0x150 (unknown byte: ignored), 0x204 (fp), 0x300 (ignored). Missed: 0x103, 0x200.
	 * tp 2, fp 2, fn 2: precision 0.5, recall 0.5. */
	const uint64_t truth[] = { 0x100, 0x103, 0x108, 0x200, 0x300 };
	const uint64_t pred[] = { 0x100, 0x101, 0x108, 0x150, 0x204, 0x300 };
	const mamori_dtruth_range known[] = { { 0x100, 0x110 }, { 0x200, 0x208 } };
	mamori_dtruth_counts c = { 0 };
	mamori_dtruth_score(&c, truth, N(truth), known, N(known), pred, N(pred));
	assert_int_equal(c.tp, 2);
	assert_int_equal(c.fp, 2);
	assert_int_equal(c.fn, 2);
	assert_true(mamori_dtruth_precision(&c) > 0.5 - EPS && mamori_dtruth_precision(&c) < 0.5 + EPS);
	assert_true(mamori_dtruth_recall(&c) > 0.5 - EPS && mamori_dtruth_recall(&c) < 0.5 + EPS);

	/* Adding a second binary accumulates: perfect on 3 starts gives tp 5, fp 2, fn 2:
	 * precision 5/7, recall 5/7. End of a range is exclusive: 0x208 is not known. */
	const uint64_t t2[] = { 0x200, 0x204, 0x207 };
	const uint64_t p2[] = { 0x200, 0x204, 0x207, 0x208 };
	mamori_dtruth_score(&c, t2, N(t2), known, N(known), p2, N(p2));
	assert_int_equal(c.tp, 5);
	assert_int_equal(c.fp, 2);
	assert_int_equal(c.fn, 2);
	assert_true(mamori_dtruth_precision(&c) > 5.0 / 7 - EPS &&
		    mamori_dtruth_precision(&c) < 5.0 / 7 + EPS);
}

static void test_score_empty(void **state)
{
	(void)state;
	/* Nothing claimed and nothing to find: both 1 by convention. Everything missed: recall 0. */
	mamori_dtruth_counts c = { 0 };
	assert_true(mamori_dtruth_precision(&c) == 1.0 && mamori_dtruth_recall(&c) == 1.0);
	const uint64_t truth[] = { 0x10, 0x12 };
	const mamori_dtruth_range known[] = { { 0x10, 0x20 } };
	mamori_dtruth_score(&c, truth, N(truth), known, N(known), NULL, 0);
	assert_int_equal(c.fn, 2);
	assert_true(mamori_dtruth_recall(&c) == 0.0);
	assert_true(mamori_dtruth_precision(&c) == 1.0);
	/* No known bytes: nothing counts. */
	mamori_dtruth_counts d = { 0 };
	mamori_dtruth_score(&d, truth, N(truth), NULL, 0, truth, N(truth));
	assert_int_equal(d.tp + d.fp + d.fn, 0);
}

static void test_parse_addrs(void **state)
{
	(void)state;
	const char text[] = "0x401010\n401000\r\n\n0x401010\n  0X401005\n";
	uint64_t *a = NULL;
	size_t n = 0;
	assert_int_equal(mamori_dtruth_parse_addrs(&a, &n, text, strlen(text), 100), MAMORI_OK);
	assert_int_equal(n, 3); /* sorted, the duplicate dropped */
	assert_int_equal(a[0], 0x401000);
	assert_int_equal(a[1], 0x401005);
	assert_int_equal(a[2], 0x401010);
	free(a);
	assert_int_equal(mamori_dtruth_parse_addrs(&a, &n, "0x10 junk\n", 10, 100), MAMORI_EFORMAT);
	assert_int_equal(mamori_dtruth_parse_addrs(&a, &n, "zz\n", 3, 100), MAMORI_EFORMAT);
	assert_int_equal(mamori_dtruth_parse_addrs(&a, &n, "1\n2\n3\n", 6, 2), MAMORI_ELIMIT);
}

static void test_parse_ranges(void **state)
{
	(void)state;
	/* Overlapping and touching ranges merge; empty ones vanish. */
	const char text[] = "0x20 0x30\n0x10 0x18\n0x18 0x1c\n0x2c 0x40\n0x50 0x50\n";
	mamori_dtruth_range *r = NULL;
	size_t n = 0;
	assert_int_equal(mamori_dtruth_parse_ranges(&r, &n, text, strlen(text), 100), MAMORI_OK);
	assert_int_equal(n, 2);
	assert_int_equal(r[0].start, 0x10);
	assert_int_equal(r[0].end, 0x1c);
	assert_int_equal(r[1].start, 0x20);
	assert_int_equal(r[1].end, 0x40);
	free(r);
	assert_int_equal(mamori_dtruth_parse_ranges(&r, &n, "0x30 0x20\n", 10, 100), MAMORI_EFORMAT);
	assert_int_equal(mamori_dtruth_parse_ranges(&r, &n, "0x30\n", 5, 100), MAMORI_EFORMAT);
}

static char *write_temp(const char *text)
{
	char tmpl[] = "/tmp/mamori-dtruth-XXXXXX";
	int fd = mkstemp(tmpl);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return strdup(tmpl);
}

static void test_manifest(void **state)
{
	(void)state;
	char *path = write_temp("file,truth,format,arch,compiler,class,program,opt\n"
				"a.exe,a.exe.truth,pe32,x86,mingw-gcc,datacode,dc1,O2\n"
				"b,b.truth,elf64,x86_64,clang,plain,lua,O0\n");
	mamori_dtruth_row *rows = NULL;
	size_t n = 0;
	assert_int_equal(mamori_dtruth_manifest_read(&rows, &n, path, 10), MAMORI_OK);
	assert_int_equal(n, 2);
	assert_string_equal(rows[0].file, "a.exe");
	assert_string_equal(rows[0].cls, "datacode");
	assert_string_equal(rows[1].arch, "x86_64");
	assert_string_equal(rows[1].opt, "O0");
	mamori_dtruth_rows_free(rows, n);
	unlink(path);
	free(path);

	path = write_temp("file,truth,format,arch,compiler,class,program,opt\na,b,c\n");
	assert_int_equal(mamori_dtruth_manifest_read(&rows, &n, path, 10), MAMORI_EFORMAT);
	unlink(path);
	free(path);
	path = write_temp("file,truth\n");
	assert_int_equal(mamori_dtruth_manifest_read(&rows, &n, path, 10), MAMORI_EFORMAT);
	unlink(path);
	free(path);
	mamori_dtruth_rows_free(NULL, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_score_known_only), cmocka_unit_test(test_score_empty),
		cmocka_unit_test(test_parse_addrs),	 cmocka_unit_test(test_parse_ranges),
		cmocka_unit_test(test_manifest),
	};
	return cmocka_run_group_tests_name("disasm-truth", tests, NULL, NULL);
}
