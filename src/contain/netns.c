/*
 * Network namespaces of one containment session: creation of named
 * namespaces (the /run/netns convention of iproute2, so `ip netns` sees and
 * can remove them), rtnetlink configuration through libmnl, iptables-nft
 * rules through iptables-restore in a child, and idempotent cleanup.
 *
 * Limits: IPv4 only (IPv6 is switched off inside our namespaces); one /30
 * per session slot, so at most CONTAIN_SLOT_COUNT sessions share one
 * upstream namespace; every rtnetlink request is answered synchronously.
 */
#include "netns.h"

/* Before the linux/ headers: glibc's net/if.h and linux/if.h clash the other way round. */
#include <net/if.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/fib_rules.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mamori/base.h"

#define NETNS_RUN_DIR	"/run/netns"
#define GW_VOID_IF	"void0" /* the dead end of the gateway's default route */
#define GW_VOID_PEER_IF "void1"
#define TPROXY_TABLE	100
#define DEAD_END_TABLE	101
#define TPROXY_MARK	1u
#define GW_INMATE_IF	"inmate0"
#define GW_UPSTREAM_IF	"up0"
#define INMATE_IF	"eth0"
#define RECORD_MAX	4096

bool contain_netns_name_ok(const char *name)
{
	if (name == NULL || name[0] == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return false;
	size_t n = 0;
	for (const char *p = name; *p != '\0'; p++, n++) {
		char c = *p;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  c == '.' || c == '_' || c == '-';
		if (!ok || n + 1 >= CONTAIN_NAME_MAX)
			return false;
	}
	return true;
}

static int ns_path(char *buf, size_t size, const char *name)
{
	if (!contain_netns_name_ok(name))
		return mamori_fail(MAMORI_EINVAL, "netns: bad namespace name '%s'", name ? name : "(null)");
	int n = snprintf(buf, size, "%s/%s", NETNS_RUN_DIR, name);
	if (n < 0 || (size_t)n >= size)
		return mamori_fail(MAMORI_EINVAL, "netns: name too long");
	return MAMORI_OK;
}

bool contain_netns_exists(const char *name)
{
	char path[64];
	struct stat st;
	if (ns_path(path, sizeof path, name) != MAMORI_OK)
		return false;
	return stat(path, &st) == 0;
}

int contain_netns_open(int *out_fd, const char *name)
{
	char path[64];
	*out_fd = -1;
	int rc = ns_path(path, sizeof path, name);
	if (rc != MAMORI_OK)
		return rc;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return mamori_fail(errno == ENOENT ? MAMORI_ENOTFOUND : MAMORI_EIO, "netns: open %s: %s",
				   path, strerror(errno));
	*out_fd = fd;
	return MAMORI_OK;
}

int contain_netns_enter(int *out_saved, const char *name)
{
	*out_saved = -1;
	int target = -1;
	int saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (saved < 0)
		return mamori_fail(MAMORI_EIO, "netns: cannot open own namespace: %s", strerror(errno));
	int rc = contain_netns_open(&target, name);
	if (rc != MAMORI_OK)
		goto done;
	if (setns(target, CLONE_NEWNET) != 0) {
		rc = mamori_fail(MAMORI_EIO, "netns: setns %s: %s", name, strerror(errno));
		goto done;
	}
	*out_saved = saved;
	saved = -1;
done:
	if (target >= 0)
		close(target);
	if (saved >= 0)
		close(saved);
	return rc;
}

int contain_netns_leave(int saved)
{
	if (saved < 0)
		return MAMORI_OK;
	int rc = MAMORI_OK;
	if (setns(saved, CLONE_NEWNET) != 0)
		rc = mamori_fail(MAMORI_EIO, "netns: cannot return to own namespace: %s", strerror(errno));
	close(saved);
	return rc;
}

int contain_netns_socket(int *out_fd, const char *name, int domain, int type, int proto)
{
	int saved = -1;
	*out_fd = -1;
	if (name != NULL) {
		int rc = contain_netns_enter(&saved, name);
		if (rc != MAMORI_OK)
			return rc;
	}
	int fd = socket(domain, type | SOCK_CLOEXEC, proto);
	int err = errno;
	int rc = contain_netns_leave(saved);
	if (fd < 0)
		return mamori_fail(MAMORI_EIO, "netns: socket in %s: %s", name ? name : "own namespace",
				   strerror(err));
	if (rc != MAMORI_OK) {
		close(fd);
		return rc;
	}
	*out_fd = fd;
	return MAMORI_OK;
}

/* /run/netns must be a shared mount point so that namespaces bound there
 * stay visible to mount namespaces created later (the sandbox's), exactly as
 * iproute2 arranges it. */
static int prepare_run_dir(void)
{
	if (mkdir(NETNS_RUN_DIR, 0755) != 0 && errno != EEXIST)
		return mamori_fail(MAMORI_EIO, "netns: mkdir %s: %s", NETNS_RUN_DIR, strerror(errno));
	if (mount("", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC, NULL) == 0)
		return MAMORI_OK;
	if (errno != EINVAL)
		return mamori_fail(MAMORI_EIO, "netns: make %s shared: %s", NETNS_RUN_DIR, strerror(errno));
	if (mount(NETNS_RUN_DIR, NETNS_RUN_DIR, "none", MS_BIND | MS_REC, NULL) != 0 ||
	    mount("", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC, NULL) != 0)
		return mamori_fail(MAMORI_EIO, "netns: bind %s: %s", NETNS_RUN_DIR, strerror(errno));
	return MAMORI_OK;
}

static int write_sysctl(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return mamori_fail(MAMORI_EIO, "netns: open %s: %s", path, strerror(errno));
	size_t len = strlen(value);
	ssize_t w = write(fd, value, len);
	int err = errno;
	close(fd);
	if (w != (ssize_t)len)
		return mamori_fail(MAMORI_EIO, "netns: write %s: %s", path, strerror(err));
	return MAMORI_OK;
}

/* ---------------------------------------------------------------- */
/* rtnetlink                                                          */
/* ---------------------------------------------------------------- */

typedef struct rtnl {
	struct mnl_socket *sock;
	unsigned portid;
	unsigned seq;
	char buf[8192];
} rtnl;

static int rtnl_open(rtnl *nl)
{
	nl->sock = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
	if (nl->sock == NULL)
		return mamori_fail(MAMORI_EIO, "netns: netlink socket: %s", strerror(errno));
	if (mnl_socket_bind(nl->sock, 0, MNL_SOCKET_AUTOPID) < 0) {
		int err = errno;
		mnl_socket_close(nl->sock);
		nl->sock = NULL;
		return mamori_fail(MAMORI_EIO, "netns: netlink bind: %s", strerror(err));
	}
	nl->portid = mnl_socket_get_portid(nl->sock);
	nl->seq = (unsigned)time(NULL);
	return MAMORI_OK;
}

static void rtnl_close(rtnl *nl)
{
	if (nl->sock != NULL)
		mnl_socket_close(nl->sock);
	nl->sock = NULL;
}

static struct nlmsghdr *rtnl_msg(rtnl *nl, uint16_t type, uint16_t flags)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(nl->buf);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	nlh->nlmsg_seq = ++nl->seq;
	return nlh;
}

/* Send one request and wait for its ack. Returns 0 or a negative errno, so
 * callers can accept EEXIST/ENODEV where idempotence wants it. */
static int rtnl_talk(rtnl *nl, struct nlmsghdr *nlh)
{
	unsigned seq = nlh->nlmsg_seq;
	if (mnl_socket_sendto(nl->sock, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	ssize_t n = mnl_socket_recvfrom(nl->sock, nl->buf, sizeof nl->buf);
	if (n < 0)
		return -errno;
	int r = mnl_cb_run(nl->buf, (size_t)n, seq, nl->portid, NULL, NULL);
	return r < 0 ? -errno : 0;
}

static int link_set_up(rtnl *nl, const char *ifname)
{
	struct nlmsghdr *nlh = rtnl_msg(nl, RTM_NEWLINK, 0);
	struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof *ifm);
	ifm->ifi_family = AF_UNSPEC;
	ifm->ifi_change = IFF_UP;
	ifm->ifi_flags = IFF_UP;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, ifname);
	return rtnl_talk(nl, nlh);
}

static int link_delete(rtnl *nl, const char *ifname)
{
	struct nlmsghdr *nlh = rtnl_msg(nl, RTM_DELLINK, 0);
	struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof *ifm);
	ifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, ifname);
	return rtnl_talk(nl, nlh);
}

/* A veth whose first end `name` stays here and whose peer is created
 * directly inside the namespace `peer_ns_fd` as `peer`. Creating the peer in
 * place avoids a name clash in this namespace and a later move. */
static int veth_create(rtnl *nl, const char *name, const char *peer, int peer_ns_fd)
{
	struct nlmsghdr *nlh = rtnl_msg(nl, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
	struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof *ifm);
	ifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	struct nlattr *linkinfo = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
	struct nlattr *data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
	struct nlattr *peer_attr = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
	struct ifinfomsg *pifm = mnl_nlmsg_put_extra_header(nlh, sizeof *pifm);
	pifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, peer);
	mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)peer_ns_fd);
	mnl_attr_nest_end(nlh, peer_attr);
	mnl_attr_nest_end(nlh, data);
	mnl_attr_nest_end(nlh, linkinfo);
	return rtnl_talk(nl, nlh);
}

static int addr_add(rtnl *nl, const char *ifname, struct in_addr addr, unsigned prefix)
{
	unsigned idx = if_nametoindex(ifname);
	if (idx == 0)
		return -ENODEV;
	struct nlmsghdr *nlh = rtnl_msg(nl, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE);
	struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof *ifa);
	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = (unsigned char)prefix;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	ifa->ifa_index = idx;
	mnl_attr_put(nlh, IFA_LOCAL, sizeof addr, &addr);
	mnl_attr_put(nlh, IFA_ADDRESS, sizeof addr, &addr);
	return rtnl_talk(nl, nlh);
}

typedef struct route_spec {
	uint16_t msg;	     /* RTM_NEWROUTE or RTM_DELROUTE */
	unsigned char type;  /* RTN_UNICAST, RTN_BLACKHOLE, RTN_LOCAL */
	unsigned char scope; /* RT_SCOPE_* */
	uint32_t table;
	struct in_addr dst;
	unsigned dst_len;
	const struct in_addr *gateway; /* NULL: none */
	const char *oif;	       /* NULL: none */
	uint32_t metric;	       /* 0: none */
} route_spec;

static int route_change(rtnl *nl, const route_spec *r)
{
	uint16_t flags = r->msg == RTM_NEWROUTE ? NLM_F_CREATE | NLM_F_EXCL : 0;
	struct nlmsghdr *nlh = rtnl_msg(nl, r->msg, flags);
	struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof *rtm);
	rtm->rtm_family = AF_INET;
	rtm->rtm_dst_len = (unsigned char)r->dst_len;
	rtm->rtm_table = r->table < 256 ? (unsigned char)r->table : RT_TABLE_UNSPEC;
	rtm->rtm_protocol = RTPROT_STATIC;
	rtm->rtm_scope = r->scope;
	rtm->rtm_type = r->type;
	mnl_attr_put_u32(nlh, RTA_TABLE, r->table);
	if (r->dst_len > 0)
		mnl_attr_put(nlh, RTA_DST, sizeof r->dst, &r->dst);
	if (r->gateway != NULL)
		mnl_attr_put(nlh, RTA_GATEWAY, sizeof *r->gateway, r->gateway);
	if (r->oif != NULL) {
		unsigned idx = if_nametoindex(r->oif);
		if (idx == 0)
			return -ENODEV;
		mnl_attr_put_u32(nlh, RTA_OIF, idx);
	}
	if (r->metric != 0)
		mnl_attr_put_u32(nlh, RTA_PRIORITY, r->metric);
	return rtnl_talk(nl, nlh);
}

/* Policy routing that TPROXY needs: marked packets are delivered locally. */
static int tproxy_rule_add(rtnl *nl)
{
	struct nlmsghdr *nlh = rtnl_msg(nl, RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL);
	struct fib_rule_hdr *frh = mnl_nlmsg_put_extra_header(nlh, sizeof *frh);
	frh->family = AF_INET;
	frh->action = FR_ACT_TO_TBL;
	frh->table = TPROXY_TABLE;
	mnl_attr_put_u32(nlh, FRA_FWMARK, TPROXY_MARK);
	mnl_attr_put_u32(nlh, FRA_FWMASK, TPROXY_MARK);
	mnl_attr_put_u32(nlh, FRA_TABLE, TPROXY_TABLE);
	mnl_attr_put_u32(nlh, FRA_PRIORITY, 100);
	int r = rtnl_talk(nl, nlh);
	if (r != 0)
		return r;
	route_spec local = { .msg = RTM_NEWROUTE,
			     .type = RTN_LOCAL,
			     .scope = RT_SCOPE_HOST,
			     .table = TPROXY_TABLE,
			     .oif = "lo" };
	return route_change(nl, &local);
}

/* A default route into a dead end, for packets from the inmate only: a
 * veth pair with both ends in the gateway namespace (void0, void1). Inmate
 * packets to any address, not only to the two upstream ranges, are then
 * routed, so they reach FORWARD and NFQUEUE and get a verdict and an event
 * instead of an ICMP "net unreachable" from the kernel; whatever is let
 * through to an address without an upstream route goes out void0 and ends
 * at void1, where FORWARD drops it. The rule comes after the main table,
 * so the upstream routes win, and the gateway's own sockets never use it:
 * a FORWARD to an unroutable address fails at once. */
static int dead_end_add(rtnl *nl)
{
	struct nlmsghdr *nlh = rtnl_msg(nl, RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL);
	struct fib_rule_hdr *frh = mnl_nlmsg_put_extra_header(nlh, sizeof *frh);
	frh->family = AF_INET;
	frh->action = FR_ACT_TO_TBL;
	frh->table = DEAD_END_TABLE;
	mnl_attr_put_strz(nlh, FRA_IFNAME, GW_INMATE_IF);
	mnl_attr_put_u32(nlh, FRA_TABLE, DEAD_END_TABLE);
	mnl_attr_put_u32(nlh, FRA_PRIORITY, 40000);
	int r = rtnl_talk(nl, nlh);
	if (r != 0)
		return r;
	route_spec dead_end = { .msg = RTM_NEWROUTE,
				.type = RTN_UNICAST,
				.scope = RT_SCOPE_LINK,
				.table = DEAD_END_TABLE,
				.oif = GW_VOID_IF };
	return route_change(nl, &dead_end);
}

static int parse_cidr(const char *cidr, struct in_addr *addr, unsigned *len)
{
	char buf[32];
	const char *slash = strchr(cidr, '/');
	size_t n = slash ? (size_t)(slash - cidr) : strlen(cidr);
	if (n == 0 || n >= sizeof buf)
		return mamori_fail(MAMORI_EINVAL, "netns: bad address '%s'", cidr);
	memcpy(buf, cidr, n);
	buf[n] = '\0';
	if (inet_pton(AF_INET, buf, addr) != 1)
		return mamori_fail(MAMORI_EINVAL, "netns: bad address '%s'", cidr);
	*len = 32;
	if (slash != NULL) {
		char *end = NULL;
		errno = 0;
		unsigned long v = strtoul(slash + 1, &end, 10);
		if (errno != 0 || end == slash + 1 || *end != '\0' || v > 32)
			return mamori_fail(MAMORI_EINVAL, "netns: bad prefix in '%s'", cidr);
		*len = (unsigned)v;
	}
	return MAMORI_OK;
}

/* Run `fn` with an rtnetlink socket opened inside namespace `ns` (NULL: the
 * caller's own); the thread stays there while fn runs so that
 * if_nametoindex() and /proc/sys/net see the same namespace. */
typedef int (*rtnl_fn)(rtnl *nl, void *arg);

static int in_netns(const char *ns, rtnl_fn fn, void *arg)
{
	int saved = -1;
	rtnl *nl = calloc(1, sizeof *nl);
	if (nl == NULL)
		return mamori_fail(MAMORI_ENOMEM, "netns: out of memory");
	int rc = MAMORI_OK;
	if (ns != NULL) {
		rc = contain_netns_enter(&saved, ns);
		if (rc != MAMORI_OK)
			goto done;
	}
	rc = rtnl_open(nl);
	if (rc != MAMORI_OK)
		goto done;
	rc = fn(nl, arg);
done:
	rtnl_close(nl);
	free(nl);
	int lrc = contain_netns_leave(saved);
	return rc != MAMORI_OK ? rc : lrc;
}

typedef struct addr_arg {
	const char *ifname;
	struct in_addr addr;
	unsigned prefix;
} addr_arg;

static int do_addr_add(rtnl *nl, void *arg)
{
	addr_arg *a = arg;
	int r = addr_add(nl, a->ifname, a->addr, a->prefix);
	if (r != 0)
		return mamori_fail(MAMORI_EIO, "netns: address on %s: %s", a->ifname, strerror(-r));
	return MAMORI_OK;
}

int contain_netns_addr_add(const char *ns, const char *ifname, const char *addr, unsigned prefix)
{
	addr_arg a = { .ifname = ifname, .prefix = prefix };
	unsigned ignored;
	int rc = parse_cidr(addr, &a.addr, &ignored);
	if (rc != MAMORI_OK)
		return rc;
	if (prefix > 32)
		return mamori_fail(MAMORI_EINVAL, "netns: prefix %u", prefix);
	return in_netns(ns, do_addr_add, &a);
}

static int do_link_up(rtnl *nl, void *arg)
{
	int r = link_set_up(nl, arg);
	if (r != 0)
		return mamori_fail(MAMORI_EIO, "netns: link %s up: %s", (const char *)arg, strerror(-r));
	return MAMORI_OK;
}

int contain_netns_link_up(const char *ns, const char *ifname)
{
	return in_netns(ns, do_link_up, (void *)ifname);
}

static int do_link_del(rtnl *nl, void *arg)
{
	int r = link_delete(nl, arg);
	if (r != 0 && r != -ENODEV)
		return mamori_fail(MAMORI_EIO, "netns: delete link %s: %s", (const char *)arg, strerror(-r));
	return MAMORI_OK;
}

int contain_netns_link_del(const char *ns, const char *ifname)
{
	if (ns != NULL && !contain_netns_exists(ns))
		return MAMORI_OK;
	return in_netns(ns, do_link_del, (void *)ifname);
}

typedef struct blackhole_arg {
	bool add;
	struct in_addr dst;
	unsigned len;
	uint32_t metric;
} blackhole_arg;

static int do_blackhole(rtnl *nl, void *arg)
{
	blackhole_arg *b = arg;
	route_spec r = { .msg = b->add ? RTM_NEWROUTE : RTM_DELROUTE,
			 .type = RTN_BLACKHOLE,
			 .scope = RT_SCOPE_UNIVERSE,
			 .table = RT_TABLE_MAIN,
			 .dst = b->dst,
			 .dst_len = b->len,
			 .metric = b->metric };
	int e = route_change(nl, &r);
	if (e != 0 && !(b->add && e == -EEXIST) && !(!b->add && e == -ESRCH))
		return mamori_fail(MAMORI_EIO, "netns: blackhole route: %s", strerror(-e));
	return MAMORI_OK;
}

int contain_netns_blackhole(bool add, const char *cidr, uint32_t metric)
{
	blackhole_arg b = { .add = add, .metric = metric };
	int rc = parse_cidr(cidr, &b.dst, &b.len);
	if (rc != MAMORI_OK)
		return rc;
	return in_netns(NULL, do_blackhole, &b);
}

/* ---------------------------------------------------------------- */
/* Named namespaces                                                   */
/* ---------------------------------------------------------------- */

int contain_netns_add(const char *name)
{
	char path[64];
	int saved = -1;
	int rc = ns_path(path, sizeof path, name);
	if (rc != MAMORI_OK)
		return rc;
	rc = prepare_run_dir();
	if (rc != MAMORI_OK)
		return rc;
	int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
	if (fd < 0)
		return mamori_fail(errno == EEXIST ? MAMORI_EINVAL : MAMORI_EIO, "netns: create %s: %s", path,
				   strerror(errno));
	close(fd);
	saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (saved < 0) {
		rc = mamori_fail(MAMORI_EIO, "netns: own namespace: %s", strerror(errno));
		goto done;
	}
	/* unshare(CLONE_NEWNET) moves only this thread; the bind mount keeps the
	 * new namespace alive after the thread returns to its own. */
	if (unshare(CLONE_NEWNET) != 0) {
		rc = mamori_fail(MAMORI_EIO, "netns: unshare: %s", strerror(errno));
		goto done;
	}
	if (mount("/proc/thread-self/ns/net", path, "none", MS_BIND, NULL) != 0)
		rc = mamori_fail(MAMORI_EIO, "netns: bind %s: %s", path, strerror(errno));
	int lrc = contain_netns_leave(saved);
	saved = -1;
	if (rc == MAMORI_OK)
		rc = lrc;
	if (rc == MAMORI_OK)
		rc = contain_netns_link_up(name, "lo");
done:
	if (saved >= 0)
		close(saved);
	if (rc != MAMORI_OK) {
		umount2(path, MNT_DETACH);
		unlink(path);
	}
	return rc;
}

int contain_netns_del(const char *name)
{
	char path[64];
	int rc = ns_path(path, sizeof path, name);
	if (rc != MAMORI_OK)
		return rc;
	if (umount2(path, MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT)
		return mamori_fail(MAMORI_EIO, "netns: umount %s: %s", path, strerror(errno));
	if (unlink(path) != 0 && errno != ENOENT)
		return mamori_fail(MAMORI_EIO, "netns: unlink %s: %s", path, strerror(errno));
	return MAMORI_OK;
}

/* ---------------------------------------------------------------- */
/* A session's topology                                               */
/* ---------------------------------------------------------------- */

static struct in_addr slot_addr(uint8_t second_octet, uint32_t slot, uint32_t host)
{
	uint32_t base = (10u << 24) | ((uint32_t)second_octet << 16) | ((slot * 4u) & 0xffffu);
	struct in_addr a = { .s_addr = htonl(base + host) };
	return a;
}

static bool tag_ok(const char *tag)
{
	size_t n = strlen(tag);
	if (n == 0 || n >= CONTAIN_TAG_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((tag[i] >= 'a' && tag[i] <= 'z') || (tag[i] >= '0' && tag[i] <= '9')))
			return false;
	return true;
}

/* Namespaces and the upstream end; no configuration yet. Only fills names,
 * so it cannot fail once validated. */
static int session_names(contain_session_net *out, const contain_netns_config *cfg)
{
	memset(out, 0, sizeof *out);
	if (cfg->tag != NULL) {
		if (!tag_ok(cfg->tag))
			return mamori_fail(MAMORI_EINVAL, "netns: tag must be 1..8 of [a-z0-9]");
		snprintf(out->tag, sizeof out->tag, "%s", cfg->tag);
	} else {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t seed = ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec;
		snprintf(out->tag, sizeof out->tag, "%08x",
			 (unsigned)(mamori_hash64(&seed, sizeof seed, 5) >> 32));
	}
	if (cfg->slot >= CONTAIN_SLOT_COUNT)
		return mamori_fail(MAMORI_EINVAL, "netns: slot %u out of range", cfg->slot);
	if (cfg->upstream_netns != NULL && !contain_netns_name_ok(cfg->upstream_netns))
		return mamori_fail(MAMORI_EINVAL, "netns: bad upstream namespace name");
	if (cfg->tcp_port == 0 || cfg->udp_port == 0)
		return mamori_fail(MAMORI_EINVAL, "netns: gateway ports must be set");
	snprintf(out->inmate_ns, sizeof out->inmate_ns, CONTAIN_NS_PREFIX "%s-in", out->tag);
	snprintf(out->gateway_ns, sizeof out->gateway_ns, CONTAIN_NS_PREFIX "%s-gw", out->tag);
	if (cfg->upstream_netns != NULL) {
		snprintf(out->upstream_ns, sizeof out->upstream_ns, "%s", cfg->upstream_netns);
		snprintf(out->upstream_if, sizeof out->upstream_if, "mm-%s", out->tag);
	}
	out->slot = cfg->slot;
	out->gateway_addr = slot_addr(66, cfg->slot, 1);
	out->inmate_addr = slot_addr(66, cfg->slot, 2);
	out->up_peer_addr = slot_addr(67, cfg->slot, 1);
	out->up_gw_addr = slot_addr(67, cfg->slot, 2);
	out->tcp_port = cfg->tcp_port;
	out->udp_port = cfg->udp_port;
	out->nfqueue = cfg->nfqueue;
	return MAMORI_OK;
}

typedef struct setup_arg {
	const contain_session_net *net;
	int peer_fd;	/* namespace of the veth peer being created */
	bool veth_made; /* the upstream veth exists: its peer end is ours */
} setup_arg;

static int nl_check(int r, const char *what)
{
	if (r != 0)
		return mamori_fail(MAMORI_EIO, "netns: %s: %s", what, strerror(-r));
	return MAMORI_OK;
}

static int setup_gateway(rtnl *nl, void *arg)
{
	setup_arg *a = arg;
	const contain_session_net *net = a->net;
	/* "default" before any link exists, so that up0 created later gets no
	 * IPv6 link-local address either (its router solicitations would be
	 * packets into the upstream namespace). */
	int rc = write_sysctl("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
	if (rc == MAMORI_OK)
		rc = write_sysctl("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
	if (rc == MAMORI_OK)
		rc = nl_check(veth_create(nl, GW_INMATE_IF, INMATE_IF, a->peer_fd), "veth to inmate");
	if (rc == MAMORI_OK)
		rc = nl_check(addr_add(nl, GW_INMATE_IF, net->gateway_addr, 30), "gateway address");
	if (rc == MAMORI_OK)
		rc = nl_check(link_set_up(nl, GW_INMATE_IF), "gateway link up");
	if (rc == MAMORI_OK)
		rc = nl_check(tproxy_rule_add(nl), "TPROXY routing");
	/* A default route into a dead end (dead_end_add) for inmate packets. */
	int own = -1;
	if (rc == MAMORI_OK && (own = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) < 0)
		rc = mamori_fail(MAMORI_EIO, "netns: own namespace: %s", strerror(errno));
	if (rc == MAMORI_OK)
		rc = nl_check(veth_create(nl, GW_VOID_IF, GW_VOID_PEER_IF, own), "dead-end veth");
	if (own >= 0)
		close(own);
	if (rc == MAMORI_OK)
		rc = nl_check(link_set_up(nl, GW_VOID_IF), "dead-end link up");
	if (rc == MAMORI_OK)
		rc = nl_check(link_set_up(nl, GW_VOID_PEER_IF), "dead-end peer up");
	if (rc == MAMORI_OK)
		rc = nl_check(dead_end_add(nl), "dead-end routing");
	/* The kernel must route inmate packets at all for FORWARD (and so
	 * NFQUEUE) to see them; the FORWARD policy DROP keeps them from going
	 * anywhere. No second IP stack, and no reverse-path surprises for
	 * TPROXYed packets. */
	if (rc == MAMORI_OK)
		rc = write_sysctl("/proc/sys/net/ipv4/ip_forward", "1");
	if (rc == MAMORI_OK)
		rc = write_sysctl("/proc/sys/net/ipv4/conf/all/rp_filter", "0");
	if (rc == MAMORI_OK)
		rc = write_sysctl("/proc/sys/net/ipv4/conf/" GW_INMATE_IF "/rp_filter", "0");
	return rc;
}

static int setup_inmate(rtnl *nl, void *arg)
{
	setup_arg *a = arg;
	const contain_session_net *net = a->net;
	int rc = write_sysctl("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
	if (rc == MAMORI_OK)
		rc = write_sysctl("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
	if (rc == MAMORI_OK)
		rc = nl_check(addr_add(nl, INMATE_IF, net->inmate_addr, 30), "inmate address");
	if (rc == MAMORI_OK)
		rc = nl_check(link_set_up(nl, INMATE_IF), "inmate link up");
	route_spec def = { .msg = RTM_NEWROUTE,
			   .type = RTN_UNICAST,
			   .scope = RT_SCOPE_UNIVERSE,
			   .table = RT_TABLE_MAIN,
			   .gateway = &net->gateway_addr,
			   .oif = INMATE_IF };
	if (rc == MAMORI_OK)
		rc = nl_check(route_change(nl, &def), "inmate default route");
	return rc;
}

/* The two TEST-NET ranges are the only destinations the gateway can reach
 * upstream; nothing else has a route. */
static const char *const upstream_ranges[] = { "198.51.100.0/24", "203.0.113.0/24" };

static int setup_upstream_gw(rtnl *nl, void *arg)
{
	setup_arg *a = arg;
	const contain_session_net *net = a->net;
	int rc = nl_check(veth_create(nl, GW_UPSTREAM_IF, net->upstream_if, a->peer_fd), "veth to upstream");
	a->veth_made = rc == MAMORI_OK;
	if (rc == MAMORI_OK)
		rc = nl_check(addr_add(nl, GW_UPSTREAM_IF, net->up_gw_addr, 30), "upstream address");
	if (rc == MAMORI_OK)
		rc = nl_check(link_set_up(nl, GW_UPSTREAM_IF), "upstream link up");
	for (size_t i = 0; rc == MAMORI_OK && i < sizeof upstream_ranges / sizeof upstream_ranges[0]; i++) {
		route_spec r = { .msg = RTM_NEWROUTE,
				 .type = RTN_UNICAST,
				 .scope = RT_SCOPE_UNIVERSE,
				 .table = RT_TABLE_MAIN,
				 .gateway = &net->up_peer_addr,
				 .oif = GW_UPSTREAM_IF };
		rc = parse_cidr(upstream_ranges[i], &r.dst, &r.dst_len);
		if (rc == MAMORI_OK)
			rc = nl_check(route_change(nl, &r), "upstream route");
	}
	return rc;
}

static int setup_upstream_peer(rtnl *nl, void *arg)
{
	setup_arg *a = arg;
	const contain_session_net *net = a->net;
	int rc = nl_check(addr_add(nl, net->upstream_if, net->up_peer_addr, 30), "upstream peer address");
	if (rc == MAMORI_OK)
		rc = nl_check(link_set_up(nl, net->upstream_if), "upstream peer up");
	return rc;
}

/* iptables-restore in a child that joined the gateway namespace. Only
 * async-signal-safe calls between fork and exec: the caller may have threads. */
static int load_iptables(const char *ns, const char *rules)
{
	int nsfd = -1, pipefd[2] = { -1, -1 };
	int rc = contain_netns_open(&nsfd, ns);
	if (rc != MAMORI_OK)
		return rc;
	if (pipe2(pipefd, O_CLOEXEC) != 0) {
		rc = mamori_fail(MAMORI_EIO, "netns: pipe: %s", strerror(errno));
		goto done;
	}
	pid_t pid = fork();
	if (pid < 0) {
		rc = mamori_fail(MAMORI_EIO, "netns: fork: %s", strerror(errno));
		goto done;
	}
	if (pid == 0) {
		static const char *const tools[] = { "/usr/sbin/iptables-nft-restore",
						     "/sbin/iptables-nft-restore",
						     "/usr/sbin/iptables-restore", "/sbin/iptables-restore" };
		if (setns(nsfd, CLONE_NEWNET) != 0 || dup2(pipefd[0], 0) < 0)
			_exit(126);
		int devnull = open("/dev/null", O_WRONLY);
		if (devnull >= 0)
			dup2(devnull, 1);
		for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++) {
			char *const argv[] = { (char *)tools[i], NULL };
			execv(tools[i], argv);
		}
		_exit(127);
	}
	close(pipefd[0]);
	pipefd[0] = -1;
	size_t len = strlen(rules), off = 0;
	while (off < len) {
		ssize_t w = write(pipefd[1], rules + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	close(pipefd[1]);
	pipefd[1] = -1;
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (off != len || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		rc = mamori_fail(MAMORI_EIO, "netns: iptables-restore in %s failed (status %d)", ns, status);
done:
	if (nsfd >= 0)
		close(nsfd);
	if (pipefd[0] >= 0)
		close(pipefd[0]);
	if (pipefd[1] >= 0)
		close(pipefd[1]);
	return rc;
}

static int gateway_rules(const contain_session_net *net)
{
	char gw[INET_ADDRSTRLEN];
	char rules[2048];
	inet_ntop(AF_INET, &net->gateway_addr, gw, sizeof gw);
	/* A packet that the gateway lets through NFQUEUE leaves by up0 with the
	 * gateway's address there, so that the upstream side needs no route to
	 * the inmate. TCP and UDP never take this path: the gateway opens its
	 * own sockets for them. */
	const char *masquerade =
		net->upstream_ns[0] != '\0' ? "-A POSTROUTING -o " GW_UPSTREAM_IF " -j MASQUERADE\n" : "";
	/* Their answers come back: only to what went out (conntrack), and
	 * never TCP or UDP, which have no business on this path. */
	const char *answers =
		net->upstream_ns[0] != '\0'
			? "-A FORWARD -i " GW_UPSTREAM_IF " -o " GW_INMATE_IF " -p tcp -j DROP\n"
			  "-A FORWARD -i " GW_UPSTREAM_IF " -o " GW_INMATE_IF " -p udp -j DROP\n"
			  "-A FORWARD -i " GW_UPSTREAM_IF " -o " GW_INMATE_IF
			  " -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n"
			: "";
	/* FORWARD drops TCP and UDP outright: they were diverted before routing,
	 * so any that reach FORWARD slipped past interception. Everything else
	 * from the inmate waits in NFQUEUE for the gateway (no --queue-bypass: no
	 * listener means drop). Nothing is ever forwarded by the kernel. */
	int n = snprintf(rules, sizeof rules,
			 "*mangle\n"
			 ":PREROUTING ACCEPT [0:0]\n"
			 "-A PREROUTING -i " GW_INMATE_IF " -p udp -j TPROXY --on-port %u --on-ip %s"
			 " --tproxy-mark 0x%x/0x%x\n"
			 "COMMIT\n"
			 "*nat\n"
			 ":PREROUTING ACCEPT [0:0]\n"
			 "-A PREROUTING -i " GW_INMATE_IF " -p tcp -j REDIRECT --to-ports %u\n"
			 ":POSTROUTING ACCEPT [0:0]\n"
			 "%s"
			 "COMMIT\n"
			 "*filter\n"
			 ":INPUT ACCEPT [0:0]\n"
			 ":FORWARD DROP [0:0]\n"
			 ":OUTPUT ACCEPT [0:0]\n"
			 "-A FORWARD -i " GW_INMATE_IF " -p tcp -j DROP\n"
			 "-A FORWARD -i " GW_INMATE_IF " -p udp -j DROP\n"
			 "-A FORWARD -i " GW_INMATE_IF " -j NFQUEUE --queue-num %u\n"
			 "%s"
			 "-A FORWARD -j DROP\n"
			 "COMMIT\n",
			 net->udp_port, gw, TPROXY_MARK, TPROXY_MARK, net->tcp_port, masquerade, net->nfqueue,
			 answers);
	if (n < 0 || (size_t)n >= sizeof rules)
		return mamori_fail(MAMORI_ELIMIT, "netns: rule text too long");
	return load_iptables(net->gateway_ns, rules);
}

int contain_session_net_create(contain_session_net *out, const contain_netns_config *cfg)
{
	int peer_fd = -1;
	setup_arg a = { .net = out, .peer_fd = -1 };
	/* What this call created, and so what a failure may remove: a clash
	 * with an existing session of the same tag must not delete that one. */
	contain_session_net undo;
	memset(&undo, 0, sizeof undo);
	int rc = session_names(out, cfg);
	if (rc != MAMORI_OK) {
		memset(out, 0, sizeof *out);
		return rc;
	}
	snprintf(undo.tag, sizeof undo.tag, "%s", out->tag);
	if (out->upstream_ns[0] != '\0' && !contain_netns_exists(out->upstream_ns)) {
		rc = mamori_fail(MAMORI_ENOTFOUND, "netns: upstream namespace %s does not exist",
				 out->upstream_ns);
		goto done;
	}
	rc = contain_netns_add(out->gateway_ns);
	if (rc != MAMORI_OK)
		goto done;
	memcpy(undo.gateway_ns, out->gateway_ns, sizeof undo.gateway_ns);
	rc = contain_netns_add(out->inmate_ns);
	if (rc != MAMORI_OK)
		goto done;
	memcpy(undo.inmate_ns, out->inmate_ns, sizeof undo.inmate_ns);
	rc = contain_netns_open(&peer_fd, out->inmate_ns);
	a.peer_fd = peer_fd;
	if (rc == MAMORI_OK)
		rc = in_netns(out->gateway_ns, setup_gateway, &a);
	if (rc == MAMORI_OK)
		rc = in_netns(out->inmate_ns, setup_inmate, &a);
	if (rc == MAMORI_OK)
		rc = gateway_rules(out);
	if (rc == MAMORI_OK && out->upstream_ns[0] != '\0') {
		close(peer_fd);
		peer_fd = -1;
		rc = contain_netns_open(&peer_fd, out->upstream_ns);
		a.peer_fd = peer_fd;
		if (rc == MAMORI_OK)
			rc = in_netns(out->gateway_ns, setup_upstream_gw, &a);
		if (a.veth_made) {
			memcpy(undo.upstream_ns, out->upstream_ns, sizeof undo.upstream_ns);
			memcpy(undo.upstream_if, out->upstream_if, sizeof undo.upstream_if);
		}
		if (rc == MAMORI_OK)
			rc = in_netns(out->upstream_ns, setup_upstream_peer, &a);
	}
done:
	if (peer_fd >= 0)
		close(peer_fd);
	if (rc != MAMORI_OK) {
		char detail[256];
		snprintf(detail, sizeof detail, "%s", mamori_error_detail());
		contain_session_net_destroy(&undo);
		/* Leave nothing in `out` that a later destroy could act on. */
		memset(out, 0, sizeof *out);
		mamori_fail(rc, "%s", detail);
	}
	return rc;
}

int contain_session_net_destroy(const contain_session_net *net)
{
	int rc = MAMORI_OK, r;
	if (net == NULL || net->tag[0] == '\0')
		return MAMORI_OK;
	/* The upstream end first: deleting the gateway namespace would take it
	 * along, but only once every socket in that namespace is closed. */
	if (net->upstream_ns[0] != '\0' && net->upstream_if[0] != '\0') {
		r = contain_netns_link_del(net->upstream_ns, net->upstream_if);
		if (r != MAMORI_OK)
			rc = r;
	}
	if (net->inmate_ns[0] != '\0' && (r = contain_netns_del(net->inmate_ns)) != MAMORI_OK)
		rc = r;
	if (net->gateway_ns[0] != '\0' && (r = contain_netns_del(net->gateway_ns)) != MAMORI_OK)
		rc = r;
	return rc;
}

int contain_session_net_record(const contain_session_net *net, const char *path)
{
	char text[512];
	int n = snprintf(text, sizeof text, "tag=%s\ninmate=%s\ngateway=%s\nupstream=%s\nupstream_if=%s\n",
			 net->tag, net->inmate_ns, net->gateway_ns, net->upstream_ns, net->upstream_if);
	if (n < 0 || (size_t)n >= sizeof text)
		return mamori_fail(MAMORI_ELIMIT, "netns: record too long");
	return mamori_file_write_atomic(path, text, (size_t)n);
}

/* Copy a recorded value if it is a safe name (or empty where allowed). The
 * record may have been tampered with: it names things we will delete. */
static int take_value(char *dst, size_t size, const uint8_t *v, size_t n, bool allow_empty)
{
	if (n >= size || (n == 0 && !allow_empty))
		return mamori_fail(MAMORI_EFORMAT, "netns: bad value in session record");
	memcpy(dst, v, n);
	dst[n] = '\0';
	if (n > 0 && !contain_netns_name_ok(dst))
		return mamori_fail(MAMORI_EFORMAT, "netns: bad name '%s' in session record", dst);
	return MAMORI_OK;
}

int contain_session_net_cleanup_file(const char *path)
{
	uint8_t *data = NULL;
	size_t len = 0;
	contain_session_net net;
	memset(&net, 0, sizeof net);
	int rc = mamori_file_read(&data, &len, path, RECORD_MAX);
	if (rc != MAMORI_OK)
		return rc;
	size_t pos = 0;
	while (rc == MAMORI_OK && pos < len) {
		size_t eol = pos;
		while (eol < len && data[eol] != '\n')
			eol++;
		size_t eq = pos;
		while (eq < eol && data[eq] != '=')
			eq++;
		if (eq == eol) {
			rc = mamori_fail(MAMORI_EFORMAT, "netns: line without '=' in %s", path);
			break;
		}
		const uint8_t *key = data + pos, *val = data + eq + 1;
		size_t klen = eq - pos, vlen = eol - eq - 1;
#define KEY_IS(s) (klen == sizeof(s) - 1 && memcmp(key, s, klen) == 0)
		if (KEY_IS("tag"))
			rc = take_value(net.tag, sizeof net.tag, val, vlen, false);
		else if (KEY_IS("inmate"))
			rc = take_value(net.inmate_ns, sizeof net.inmate_ns, val, vlen, true);
		else if (KEY_IS("gateway"))
			rc = take_value(net.gateway_ns, sizeof net.gateway_ns, val, vlen, true);
		else if (KEY_IS("upstream"))
			rc = take_value(net.upstream_ns, sizeof net.upstream_ns, val, vlen, true);
		else if (KEY_IS("upstream_if"))
			rc = take_value(net.upstream_if, sizeof net.upstream_if, val, vlen, true);
#undef KEY_IS
		pos = eol + 1;
	}
	free(data);
	/* Only our own namespaces are ever deleted whole; the upstream one is
	 * someone else's and loses just our link end. */
	if (rc == MAMORI_OK && ((net.inmate_ns[0] != '\0' &&
				 strncmp(net.inmate_ns, CONTAIN_NS_PREFIX, strlen(CONTAIN_NS_PREFIX)) != 0) ||
				(net.gateway_ns[0] != '\0' &&
				 strncmp(net.gateway_ns, CONTAIN_NS_PREFIX, strlen(CONTAIN_NS_PREFIX)) != 0)))
		rc = mamori_fail(MAMORI_EFORMAT, "netns: record names a namespace that is not ours");
	if (rc == MAMORI_OK && net.tag[0] == '\0')
		rc = mamori_fail(MAMORI_EFORMAT, "netns: record without tag");
	if (rc == MAMORI_OK)
		rc = contain_session_net_destroy(&net);
	return rc;
}
