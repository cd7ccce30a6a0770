/*
 * Tests of the session capture (src/contain/capture.c) in a network
 * namespace this test creates and always deletes: a veth pair inside it,
 * 50 UDP datagrams from one end, a capture with a BPF filter on the other;
 * the file must hold exactly those 50 (counted by tshark, a real reader,
 * and by our stats), the file cap must hold, and a missing namespace,
 * interface or a bad filter must give their errors. Needs root; without it
 * the test says so and fails, since `make test` runs as root.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "capture.h"
#include "mamori/base.h"
#include "netns.h"

static char ns[64], tmpdir[256];

static int sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

/* Killed by meson's timeout or ^C: remove the namespace anyway. A named
 * namespace is a bind mount under /run/netns; detaching and unlinking it
 * (both async-signal-safe) lets the kernel free it with its veth pair. */
static char ns_path[128];

static void on_signal(int sig)
{
	umount2(ns_path, MNT_DETACH);
	unlink(ns_path);
	_exit(128 + sig);
}

static int setup(void **state)
{
	(void)state;
	if (geteuid() != 0) {
		fprintf(stderr, "test_capture needs root (network namespaces); make test runs as root\n");
		return -1;
	}
	snprintf(ns, sizeof(ns), "mamori-cap-%d", (int)getpid());
	snprintf(ns_path, sizeof(ns_path), "/run/netns/%s", ns);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mamori-test-capture-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	/* Everything lives in our namespace: nothing touches the host's. Only
	 * va has an address; 10.77.0.9 is a static neighbour with vb's MAC, so
	 * datagrams to it leave through va and arrive on vb (an address on vb
	 * itself would be local and go through lo). */
	return sh("ip netns add %s && ip -n %s link set lo up && "
		  "ip -n %s link add va type veth peer name vb && "
		  "ip -n %s addr add 10.77.0.1/24 dev va && "
		  "ip -n %s link set va up && ip -n %s link set vb up && "
		  "ip -n %s neigh add 10.77.0.9 lladdr $(ip netns exec %s cat /sys/class/net/vb/address) dev "
		  "va",
		  ns, ns, ns, ns, ns, ns, ns, ns) == 0
		       ? 0
		       : -1;
}

static int teardown(void **state)
{
	(void)state;
	sh("ip netns del %s 2>/dev/null", ns);
	sh("rm -rf '%s'", tmpdir);
	/* The namespace must be gone, whatever happened. */
	char path[128];
	snprintf(path, sizeof(path), "/run/netns/%s", ns);
	struct stat st;
	return stat(path, &st) == 0 ? -1 : 0;
}

/* Send `n` UDP datagrams of `size` bytes from 10.77.0.1 to 10.77.0.9:9999
 * on a socket made inside the namespace. */
static void send_udp(int n, size_t size)
{
	int s = -1;
	assert_int_equal(contain_netns_socket(&s, ns, AF_INET, SOCK_DGRAM, 0), MAMORI_OK);
	struct sockaddr_in src = { .sin_family = AF_INET },
			   dst = { .sin_family = AF_INET, .sin_port = htons(9999) };
	inet_pton(AF_INET, "10.77.0.1", &src.sin_addr);
	inet_pton(AF_INET, "10.77.0.9", &dst.sin_addr);
	assert_int_equal(bind(s, (struct sockaddr *)&src, sizeof(src)), 0);
	char buf[2000];
	memset(buf, 'x', sizeof(buf));
	for (int i = 0; i < n; i++)
		assert_int_equal(sendto(s, buf, size, 0, (struct sockaddr *)&dst, sizeof(dst)),
				 (ssize_t)size);
	close(s);
}

static int tshark_count(const char *pcap, const char *filter)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "tshark -r '%s' -Y '%s' 2>/dev/null | wc -l", pcap, filter);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	int n = -1;
	assert_int_equal(fscanf(p, "%d", &n), 1);
	pclose(p);
	return n;
}

static void test_capture_udp(void **state)
{
	(void)state;
	char pcap[400];
	snprintf(pcap, sizeof(pcap), "%s/vb.pcap", tmpdir);
	contain_capture *c = NULL;
	assert_int_equal(contain_capture_start(&c, ns, "vb", pcap, "udp and dst port 9999", 0, 0), MAMORI_OK);
	send_udp(50, 100);
	contain_capture_stats st;
	contain_capture_stop(c, &st);
	assert_int_equal(st.packets, 50);
	assert_int_equal(st.cut, 0);
	assert_int_equal(tshark_count(pcap, "udp.dstport == 9999 && ip.src == 10.77.0.1"), 50);
}

static void test_file_cap(void **state)
{
	(void)state;
	char pcap[400];
	snprintf(pcap, sizeof(pcap), "%s/cap.pcap", tmpdir);
	contain_capture *c = NULL;
	/* Room for the header and about 3 packets of 1,042 bytes. */
	const uint64_t cap = 24 + 3 * (16 + 1042) + 100;
	assert_int_equal(contain_capture_start(&c, ns, "vb", pcap, "udp", 0, cap), MAMORI_OK);
	send_udp(20, 1000);
	contain_capture_stats st;
	contain_capture_stop(c, &st);
	assert_int_equal(st.packets, 3);
	assert_int_equal(st.cut, 17);
	struct stat fs;
	assert_int_equal(stat(pcap, &fs), 0);
	assert_true((uint64_t)fs.st_size <= cap);
	assert_int_equal(tshark_count(pcap, "udp"), 3);
}

static void test_errors(void **state)
{
	(void)state;
	char pcap[400];
	snprintf(pcap, sizeof(pcap), "%s/x.pcap", tmpdir);
	contain_capture *c = NULL;
	assert_int_equal(contain_capture_start(&c, "mamori-no-such-ns", "vb", pcap, NULL, 0, 0),
			 MAMORI_ENOTFOUND);
	assert_int_equal(contain_capture_start(&c, "../etc", "vb", pcap, NULL, 0, 0), MAMORI_EINVAL);
	assert_int_equal(contain_capture_start(&c, ns, "nope0", pcap, NULL, 0, 0), MAMORI_ENOTFOUND);
	assert_int_equal(contain_capture_start(&c, ns, "vb", pcap, "udp and and", 0, 0), MAMORI_EINVAL);
	assert_null(c);
	/* The thread came back to its own namespace after each attempt. */
	char path[128];
	snprintf(path, sizeof(path), "/run/netns/%s", ns);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct stat s1, s2;
	assert_int_equal(fstat(fd, &s1), 0);
	assert_int_equal(stat("/proc/thread-self/ns/net", &s2), 0);
	assert_false(s1.st_ino == s2.st_ino && s1.st_dev == s2.st_dev);
	close(fd);
	contain_capture_stop(NULL, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_capture_udp),
		cmocka_unit_test(test_file_cap),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
