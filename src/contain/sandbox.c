/*
 * Run one command inside the inmate namespace with new mount and pid
 * namespaces, resource limits, captured output and a wall-clock timeout.
 *
 * The child comes from a raw clone(CLONE_NEWPID | CLONE_NEWNS): fork
 * semantics, but the child is pid 1 of its own pid namespace, so killing it
 * kills everything it started. Between clone and exec the child makes only
 * system calls (no malloc, no stdio): the caller may be multi-threaded.
 * PATH is searched in the parent for the same reason. Exec failures come
 * back over a close-on-exec pipe.
 */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mamori/base.h"
#include "netns.h"

static char *const default_env[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
				     "HOME=/", "LANG=C", NULL };

/* Resolve argv[0] the way execvp would, but before the clone. */
static int resolve_program(char *out, size_t size, const char *name)
{
	if (strchr(name, '/') != NULL) {
		if (snprintf(out, size, "%s", name) >= (int)size)
			return mamori_fail(MAMORI_EINVAL, "sandbox: program path too long");
		return MAMORI_OK;
	}
	static const char *const dirs[] = { "/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
					    "/usr/bin",	       "/sbin",		 "/bin" };
	for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
		if (snprintf(out, size, "%s/%s", dirs[i], name) >= (int)size)
			continue;
		if (access(out, X_OK) == 0)
			return MAMORI_OK;
	}
	return mamori_fail(MAMORI_ENOTFOUND, "sandbox: program '%s' not found", name);
}

static int open_capture(int *out_fd, const char *dir, const char *name)
{
	char path[PATH_MAX];
	*out_fd = -1;
	if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
		return mamori_fail(MAMORI_EINVAL, "sandbox: session path too long");
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0)
		return mamori_fail(MAMORI_EIO, "sandbox: open %s: %s", path, strerror(errno));
	*out_fd = fd;
	return MAMORI_OK;
}

typedef struct child_plan {
	int netfd, outfd, errfd, nullfd, errpipe;
	const char *program, *cwd, *resolv_conf;
	char *const *argv, *const *envp;
	struct rlimit cpu, as, nproc, nofile;
	bool drop, keep_caps, raw;
	uid_t uid;
	gid_t gid;
} child_plan;

/* Where the child failed, reported to the parent with errno. */
enum child_step {
	STEP_PDEATHSIG = 1,
	STEP_SETNS,
	STEP_MOUNT_PRIVATE,
	STEP_MOUNT_PROC,
	STEP_UMOUNT_SYS,
	STEP_MOUNT_SYS,
	STEP_MOUNT_RESOLV,
	STEP_RLIMIT,
	STEP_STDIO,
	STEP_CHDIR,
	STEP_SETUID,
	STEP_SECUREBITS,
	STEP_AMBIENT,
	STEP_CAPSET,
	STEP_NO_NEW_PRIVS,
	STEP_CLOSE_FDS,
	STEP_EXEC,
	STEP_COUNT
};

static const char *const step_names[STEP_COUNT] = {
	[STEP_PDEATHSIG] = "PR_SET_PDEATHSIG",
	[STEP_SETNS] = "setns",
	[STEP_MOUNT_PRIVATE] = "mount private /",
	[STEP_MOUNT_PROC] = "mount /proc",
	[STEP_UMOUNT_SYS] = "umount /sys",
	[STEP_MOUNT_SYS] = "mount /sys",
	[STEP_MOUNT_RESOLV] = "bind-mount /etc/resolv.conf",
	[STEP_RLIMIT] = "setrlimit",
	[STEP_STDIO] = "stdio",
	[STEP_CHDIR] = "chdir",
	[STEP_SETUID] = "setuid",
	[STEP_SECUREBITS] = "securebits",
	[STEP_AMBIENT] = "ambient caps",
	[STEP_CAPSET] = "capset",
	[STEP_NO_NEW_PRIVS] = "no_new_privs",
	[STEP_CLOSE_FDS] = "close_range",
	[STEP_EXEC] = "execve",
};

/* Report errno and the failed step to the parent, and die. */
static _Noreturn void child_fail(const child_plan *p, enum child_step step)
{
	int msg[2] = { (int)step, errno };
	ssize_t w = write(p->errpipe, msg, sizeof msg);
	(void)w;
	_exit(127);
}

/* Root without capabilities: it cannot setns() back out, mount, load
 * modules or touch iptables, and exec cannot give them back (securebits
 * locked, bounding set empty, no_new_privs). Kernels newer than our headers
 * may know more capabilities: the bounding loop runs until EINVAL. With
 * raw_sockets, CAP_NET_RAW alone stays, as an ambient capability so that it
 * survives exec: raw packets can only leave the inmate's namespace by its
 * veth, into the gateway's rules. */
static void drop_capabilities(const child_plan *p)
{
	/* ping sets PR_SET_KEEPCAPS itself before it drops to what it needs, and
	 * fails when that bit is locked: with raw sockets it stays unlocked
	 * (it matters only across setuid, and the bounding set holds
	 * CAP_NET_RAW alone). */
	unsigned long bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
			     SECBIT_NO_SETUID_FIXUP_LOCKED | (p->raw ? 0 : SECBIT_KEEP_CAPS_LOCKED);
	if (prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) != 0)
		child_fail(p, STEP_SECUREBITS);
	for (unsigned long cap = 0; cap < 64; cap++) {
		if (p->raw && cap == CAP_NET_RAW)
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno == EINVAL)
			break;
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
		child_fail(p, STEP_AMBIENT);
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof data);
	if (p->raw) /* CAP_NET_RAW is 13: the first word */
		data[0].effective = data[0].permitted = data[0].inheritable = 1u << CAP_NET_RAW;
	if (syscall(SYS_capset, &hdr, data) != 0)
		child_fail(p, STEP_CAPSET);
	if (p->raw && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_RAW, 0, 0) != 0)
		child_fail(p, STEP_AMBIENT);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		child_fail(p, STEP_NO_NEW_PRIVS);
}

static _Noreturn void child_main(const child_plan *p)
{
	/* If the gateway process dies, the inmate must not outlive it. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
		child_fail(p, STEP_PDEATHSIG);
	if (setns(p->netfd, CLONE_NEWNET) != 0)
		child_fail(p, STEP_SETNS);
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		child_fail(p, STEP_MOUNT_PRIVATE);
	/* A /proc that shows this pid namespace only. */
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
		child_fail(p, STEP_MOUNT_PROC);
	/* And a /sys that shows the inmate's network devices, not the host's
	 * (sysfs shows the namespace of whoever mounted it), as `ip netns exec`
	 * does. */
	if (umount2("/sys", MNT_DETACH) != 0 && errno != EINVAL)
		child_fail(p, STEP_UMOUNT_SYS);
	if (mount("sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
		child_fail(p, STEP_MOUNT_SYS);
	/* The session's resolver; read-only, so the command cannot change it
	 * for the next one (the mount is private to this namespace anyway). */
	if (p->resolv_conf &&
	    (mount(p->resolv_conf, "/etc/resolv.conf", NULL, MS_BIND, NULL) != 0 ||
	     mount(NULL, "/etc/resolv.conf", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) != 0))
		child_fail(p, STEP_MOUNT_RESOLV);
	if (setrlimit(RLIMIT_CPU, &p->cpu) != 0 || setrlimit(RLIMIT_AS, &p->as) != 0 ||
	    setrlimit(RLIMIT_NPROC, &p->nproc) != 0 || setrlimit(RLIMIT_NOFILE, &p->nofile) != 0)
		child_fail(p, STEP_RLIMIT);
	if (dup2(p->nullfd, 0) < 0 || dup2(p->outfd, 1) < 0 || dup2(p->errfd, 2) < 0)
		child_fail(p, STEP_STDIO);
	if (chdir(p->cwd) != 0)
		child_fail(p, STEP_CHDIR);
	if (p->drop && (setgroups(0, NULL) != 0 || setgid(p->gid) != 0 || setuid(p->uid) != 0))
		child_fail(p, STEP_SETUID);
	if (!p->keep_caps)
		drop_capabilities(p);
	/* Nothing of ours leaks into the inmate but 0-2 (and the error pipe,
	 * already close-on-exec). */
	if (syscall(SYS_close_range, 3u, ~0u, 4u /* CLOSE_RANGE_CLOEXEC */) != 0)
		child_fail(p, STEP_CLOSE_FDS);
	execve(p->program, p->argv, p->envp);
	child_fail(p, STEP_EXEC);
}

static struct rlimit limit_of(uint64_t v, uint64_t dflt)
{
	rlim_t x = v == UINT64_MAX ? RLIM_INFINITY : (rlim_t)(v != 0 ? v : dflt);
	struct rlimit r = { .rlim_cur = x, .rlim_max = x };
	return r;
}

int contain_sandbox_run(contain_sandbox_result *out, const contain_sandbox_config *cfg)
{
	child_plan p = { .netfd = -1, .outfd = -1, .errfd = -1, .nullfd = -1, .errpipe = -1 };
	int pipefd[2] = { -1, -1 };
	int pidfd = -1;
	char program[PATH_MAX];
	memset(out, 0, sizeof *out);
	if (cfg->netns == NULL || cfg->session_dir == NULL || cfg->argv == NULL || cfg->argv[0] == NULL)
		return mamori_fail(MAMORI_EINVAL,
				   "sandbox: namespace, session folder and command are required");
	int rc = resolve_program(program, sizeof program, cfg->argv[0]);
	if (rc == MAMORI_OK)
		rc = contain_netns_open(&p.netfd, cfg->netns);
	if (rc == MAMORI_OK)
		rc = open_capture(&p.outfd, cfg->session_dir, "stdout.txt");
	if (rc == MAMORI_OK)
		rc = open_capture(&p.errfd, cfg->session_dir, "stderr.txt");
	if (rc != MAMORI_OK)
		goto done;
	p.nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (p.nullfd < 0 || pipe2(pipefd, O_CLOEXEC) != 0) {
		rc = mamori_fail(MAMORI_EIO, "sandbox: %s", strerror(errno));
		goto done;
	}
	p.errpipe = pipefd[1];
	p.program = program;
	p.cwd = cfg->cwd != NULL ? cfg->cwd : cfg->session_dir;
	p.resolv_conf = cfg->resolv_conf;
	p.argv = cfg->argv;
	p.envp = cfg->envp != NULL ? cfg->envp : default_env;
	p.cpu = limit_of(cfg->cpu_seconds, 60);
	p.as = limit_of(cfg->address_space, 1ull << 30);
	p.nproc = limit_of(cfg->max_procs, 64);
	p.nofile = limit_of(cfg->max_files, 256);
	p.drop = cfg->drop_privileges;
	p.keep_caps = cfg->keep_capabilities;
	p.raw = cfg->raw_sockets;
	p.uid = cfg->uid;
	p.gid = cfg->gid;

	double t0 = mamori_now();
	long pid = syscall(SYS_clone, (unsigned long)(CLONE_NEWPID | CLONE_NEWNS | SIGCHLD), NULL, NULL, NULL,
			   0);
	if (pid < 0) {
		rc = mamori_fail(MAMORI_EIO, "sandbox: clone: %s", strerror(errno));
		goto done;
	}
	if (pid == 0)
		child_main(&p);
	close(pipefd[1]);
	pipefd[1] = -1;
	int msg[2] = { 0, 0 };
	ssize_t got;
	do
		got = read(pipefd[0], msg, sizeof msg);
	while (got < 0 && errno == EINTR);
	if (got == (ssize_t)sizeof msg) {
		int status;
		waitpid((pid_t)pid, &status, 0);
		const char *what = msg[0] > 0 && msg[0] < STEP_COUNT ? step_names[msg[0]] : "?";
		rc = mamori_fail(msg[0] == STEP_EXEC && msg[1] == ENOENT ? MAMORI_ENOTFOUND : MAMORI_EIO,
				 "sandbox: starting %s failed at %s: %s", program, what, strerror(msg[1]));
		goto done;
	}

	unsigned timeout_ms = cfg->timeout_ms != 0 ? cfg->timeout_ms : 60000;
	pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
	if (pidfd >= 0) {
		struct pollfd pfd[2] = { { .fd = pidfd, .events = POLLIN },
					 { .fd = cfg->cancel_fd > 0 ? cfg->cancel_fd : -1,
					   .events = POLLIN } };
		double deadline = t0 + timeout_ms / 1000.0;
		for (;;) {
			double left = deadline - mamori_now();
			if (left <= 0) {
				out->timed_out = true;
				break;
			}
			int n = poll(pfd, 2, (int)(left * 1000.0) + 1);
			if (n > 0 && pfd[0].revents)
				break;
			if (n > 0 && pfd[1].revents) {
				out->cancelled = true;
				break;
			}
			if (n < 0 && errno != EINTR)
				break;
		}
	}
	if (out->timed_out || out->cancelled)
		kill((pid_t)pid, SIGKILL);
	int status = 0;
	while (waitpid((pid_t)pid, &status, 0) < 0 && errno == EINTR)
		;
	out->wall_seconds = mamori_now() - t0;
	if (WIFEXITED(status)) {
		out->exited = true;
		out->exit_code = WEXITSTATUS(status);
	} else if (WIFSIGNALED(status)) {
		out->term_signal = WTERMSIG(status);
	}
done:
	if (pidfd >= 0)
		close(pidfd);
	int fds[] = { p.netfd, p.outfd, p.errfd, p.nullfd, pipefd[0], pipefd[1] };
	for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return rc;
}
