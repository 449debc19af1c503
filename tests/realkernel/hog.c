/*
 * hog: a tiny memory hog for oomtop's real-kernel tests, the one source of both tiers: the cgroup v1 tests on the
 * host (tests/realkernel/hog.py builds it) and the cgroup v2 tier's VM (tests/v2/harness.py builds it on the host
 * before the boot).  Built static when possible: small, with a steady rss_file.
 *
 *   hog hog     <anon MiB> <go_fd> <ready_fd> [shmem=MiB] [file=MiB] [dir=PATH] [name=COMM]
 *   hog trigger <cap MiB>  <go_fd> <ready_fd> [step=KiB] [name=COMM]
 *   hog twins   <MiB>      <go_fd> <ready_fd> [low=PID]
 *
 * Every mode first blocks on a one-byte read from go_fd: the parent moves the process into its cgroup and
 * sets its oom_score_adj, then writes the byte, so nothing is charged before the join.  name=COMM becomes the
 * comm (PR_SET_NAME, before that read): "pause" for a pod's sandbox process, for instance; a trigger without
 * one is called "oomtop-trigger".
 *
 * hog:     maps and touches <anon MiB> of private anonymous memory (RssAnon; 0: none, like a pause process),
 *          optionally shmem=MiB of a memfd mapping (RssShmem) and file=MiB of an unnamed file in dir=PATH
 *          (default /tmp) written, mapped shared and mlocked so reclaim cannot take it back (RssFile); writes
 *          "R" to ready_fd.  Then it serves go_fd: each further "p" read there touches one more page and
 *          answers "P"; "s" maps, touches and unmaps one page and answers "Y" -- the unmap makes the kernel
 *          fold this task's cached rss deltas into the mm's counters (6.1 batches up to 64 faults per task),
 *          so /proc and the OOM killer then see its exact rss.  At EOF on go_fd it sleeps forever.
 * trigger: writes "S" to ready_fd, then maps and touches anonymous memory in steps (step=KiB, 1 MiB by
 *          default) until it holds <cap MiB> (or is killed); at the cap it writes "D" and sleeps forever.  The
 *          cap bounds how much the trigger itself can weigh in the OOM killer's scan.
 * twins:   forks two children inside its cgroup that allocate the same <MiB> of anonymous memory the same way:
 *          the first with an ordinary pid, the second ~30 ms later with clone3(set_tid) at low=PID (or any free
 *          pid below the first's when it is 0, absent, not lower, or taken), so pid order and fork (= the
 *          kernel's scan) order disagree.  Writes "T <pid1> <pid2>\n" to ready_fd, sleeps.  Run it pinned to
 *          one CPU so both children's per-cpu rss counters end up identical.
 *
 * On failure it writes "E" (and why on stderr) and exits non-zero.  It dies with its parent
 * (PR_SET_PDEATHSIG), so a crashed test run leaves no hogs behind.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static void say(int fd, char c)
{
    ssize_t n;
    do {
        n = write(fd, &c, 1);
    } while (n < 0 && errno == EINTR);
}

static void fail(int ready_fd, const char *what)
{
    fprintf(stderr, "hog %d: %s: %s\n", (int)getpid(), what, strerror(errno));
    say(ready_fd, 'E');
    _exit(5);
}

static void touch(char *p, size_t bytes, long page)
{
    for (size_t off = 0; off < bytes; off += (size_t)page)
        p[off] = (char)(off / (size_t)page + 1);
}

static char *anon(size_t bytes, long page)
{
    char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    madvise(p, bytes, MADV_NOHUGEPAGE);
    touch(p, bytes, page);
    return p;
}

static void shmem(size_t bytes, long page, int ready_fd)
{
    int fd = memfd_create("oomtop-hog", 0);
    if (fd < 0)
        fail(ready_fd, "memfd_create");
    if (ftruncate(fd, (off_t)bytes) != 0)
        fail(ready_fd, "ftruncate memfd");
    char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        fail(ready_fd, "mmap memfd");
    madvise(p, bytes, MADV_NOHUGEPAGE);
    touch(p, bytes, page);
    close(fd); /* the mapping keeps the pages */
}

static void filemap(size_t bytes, const char *dir, int ready_fd)
{
    static char buf[64 << 10];
    int fd = open(dir, O_TMPFILE | O_RDWR, 0600); /* never has a name: freed when the process dies */
    if (fd < 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/oomtop-hog-XXXXXX", dir);
        fd = mkstemp(path);
        if (fd < 0)
            fail(ready_fd, "open file");
        unlink(path);
    }
    memset(buf, 'x', sizeof buf);
    for (size_t done = 0; done < bytes;) {
        size_t chunk = bytes - done < sizeof buf ? bytes - done : sizeof buf;
        ssize_t n = write(fd, buf, chunk);
        if (n <= 0)
            fail(ready_fd, "write file");
        done += (size_t)n;
    }
    char *p = mmap(NULL, bytes, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        fail(ready_fd, "mmap file");
    if (mlock(p, bytes) != 0) /* populates and pins: reclaim must not shrink RssFile before the OOM */
        fail(ready_fd, "mlock file");
    close(fd);
}

static void twin_child(long mib, long page, int report_fd)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (anon((size_t)mib << 20, page) == NULL)
        _exit(5);
    say(report_fd, 'r');
    for (;;)
        pause();
}

static pid_t clone_at(pid_t want)
{
    struct {
        unsigned long long flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
            set_tid_size, cgroup;
    } args;
    pid_t tids[1] = {want};
    memset(&args, 0, sizeof args);
    args.exit_signal = SIGCHLD;
    args.set_tid = (unsigned long long)(uintptr_t)tids;
    args.set_tid_size = 1;
    return (pid_t)syscall(SYS_clone3, &args, sizeof args);
}

static void twins(long mib, long page, pid_t low, int ready_fd)
{
    int report[2];
    char c;
    if (pipe(report) != 0)
        fail(ready_fd, "pipe");
    pid_t first = fork();
    if (first < 0)
        fail(ready_fd, "fork");
    if (first == 0)
        twin_child(mib, page, report[1]);
    if (read(report[0], &c, 1) != 1)
        fail(ready_fd, "first twin");
    usleep(30000); /* a later start time too, not only a later place in the cgroup's task list */
    pid_t second = -1;
    if (low > 0 && low < first)
        second = clone_at(low);
    /* Otherwise (or when taken) any free pid well below the first twin's: pids may have wrapped. */
    for (pid_t cand = first - 97; second < 0 && cand >= 300; cand -= 211) {
        second = clone_at(cand);
        if (second < 0 && errno != EEXIST)
            break;
    }
    if (second < 0)
        fail(ready_fd, "clone3 set_tid");
    if (second == 0)
        twin_child(mib, page, report[1]);
    if (read(report[0], &c, 1) != 1)
        fail(ready_fd, "second twin");
    dprintf(ready_fd, "T %d %d\n", (int)first, (int)second);
}

static const char *option(int argc, char **argv, const char *key)
{
    size_t len = strlen(key);
    for (int i = 5; i < argc; i++)
        if (strncmp(argv[i], key, len) == 0 && argv[i][len] == '=')
            return argv[i] + len + 1;
    return NULL;
}

static long option_long(int argc, char **argv, const char *key, long fallback)
{
    const char *value = option(argc, argv, key);
    return value && *value ? strtol(value, NULL, 10) : fallback;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr,
                "usage: %s hog|trigger|twins <MiB> <go_fd> <ready_fd> [step=KiB] [shmem=MiB] [file=MiB] [dir=PATH]"
                " [name=COMM] [low=PID]\n",
                argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    long mib = strtol(argv[2], NULL, 10);
    int go_fd = atoi(argv[3]);
    int ready_fd = atoi(argv[4]);
    long step_kib = option_long(argc, argv, "step", 1024);
    long shmem_mib = option_long(argc, argv, "shmem", 0);
    long file_mib = option_long(argc, argv, "file", 0);
    const char *file_dir = option(argc, argv, "dir");
    const char *name = option(argc, argv, "name");
    long page = sysconf(_SC_PAGESIZE);

    if (file_dir == NULL || !*file_dir)
        file_dir = "/tmp";
    if ((name == NULL || !*name) && strcmp(mode, "trigger") == 0)
        name = "oomtop-trigger";

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        return 4; /* the parent is already gone */
    if (name && *name)
        prctl(PR_SET_NAME, name);

    char c;
    ssize_t n;
    do {
        n = read(go_fd, &c, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1)
        return 3; /* the parent gave up before the handshake */

    if (strcmp(mode, "hog") == 0) {
        if (mib > 0 && anon((size_t)mib << 20, page) == NULL)
            fail(ready_fd, "mmap anon");
        if (shmem_mib > 0)
            shmem((size_t)shmem_mib << 20, page, ready_fd);
        if (file_mib > 0)
            filemap((size_t)file_mib << 20, file_dir, ready_fd);
        say(ready_fd, 'R');
        for (;;) { /* serve go_fd until the parent closes it */
            do {
                n = read(go_fd, &c, 1);
            } while (n < 0 && errno == EINTR);
            if (n != 1)
                break;
            if (c == 'p') {
                say(ready_fd, anon((size_t)page, page) ? 'P' : 'E');
            } else if (c == 's') {
                char *q = anon((size_t)page, page);
                if (q)
                    munmap(q, (size_t)page);
                say(ready_fd, q ? 'Y' : 'E');
            }
        }
        close(go_fd);
    } else if (strcmp(mode, "twins") == 0) {
        close(go_fd);
        twins(mib, page, (pid_t)option_long(argc, argv, "low", 0), ready_fd);
    } else if (strcmp(mode, "trigger") == 0) {
        close(go_fd);
        say(ready_fd, 'S');
        size_t step = (size_t)step_kib << 10;
        size_t cap = (size_t)mib << 20, held = 0;
        while (held + step <= cap) {
            if (anon(step, page) == NULL)
                fail(ready_fd, "mmap anon");
            held += step;
        }
        say(ready_fd, 'D');
    } else {
        return 2;
    }
    for (;;)
        pause();
}
