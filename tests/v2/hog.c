/*
 * hog: a tiny memory hog for oomtop's cgroup v2 kernel tier (built on the host before the VM boots).
 *
 *   hog hog     <MiB>     <go_fd> <ready_fd> [name]
 *   hog trigger <cap MiB> <go_fd> <ready_fd> [name] [step KiB]
 *
 * Both modes first block on a one-byte read from go_fd: the parent moves the process into its cgroup and sets
 * its oom_score_adj, then writes the byte, so nothing is charged before the join.  [name] becomes the comm
 * (PR_SET_NAME): "pause" for a pod's sandbox process, for instance.
 *
 * hog:     maps and touches <MiB> MiB of private anonymous memory (0: none, like a pause process), writes "R"
 *          to ready_fd, then serves go_fd: each further "p" read there touches one more page and answers "P";
 *          "s" maps, touches and unmaps one page and answers "Y" -- the unmap makes the kernel fold this task's
 *          cached rss deltas into the mm's counters (6.1 batches up to 64 faults per task), so /proc and the OOM
 *          killer then see its exact rss.  At EOF it sleeps forever.
 * trigger: writes "S" to ready_fd, then maps and touches memory in steps (1 MiB by default) until it holds
 *          <cap MiB> (or is killed); at the cap it writes "D" and sleeps forever.  The cap bounds how much the
 *          trigger itself can weigh in the OOM killer's scan.
 *
 * The process dies with its parent (PR_SET_PDEATHSIG), so a crashed test run leaves no hogs behind.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

static void say(int fd, char c)
{
    ssize_t n;
    do {
        n = write(fd, &c, 1);
    } while (n < 0 && errno == EINTR);
}

static char *touch_new(size_t bytes, long page)
{
    char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    madvise(p, bytes, MADV_NOHUGEPAGE);
    for (size_t off = 0; off < bytes; off += (size_t)page)
        p[off] = (char)(off / (size_t)page + 1);
    return p;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s hog|trigger <MiB> <go_fd> <ready_fd> [name] [step KiB]\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    long mib = strtol(argv[2], NULL, 10);
    int go_fd = atoi(argv[3]);
    int ready_fd = atoi(argv[4]);
    const char *name = argc > 5 && argv[5][0] ? argv[5] : NULL;
    long step_kib = argc > 6 ? strtol(argv[6], NULL, 10) : 1024;
    long page = sysconf(_SC_PAGESIZE);

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        return 4; /* the parent is already gone */
    if (name)
        prctl(PR_SET_NAME, name);

    char c;
    ssize_t n;
    do {
        n = read(go_fd, &c, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1)
        return 3; /* the parent gave up before the handshake */

    if (strcmp(mode, "hog") == 0) {
        if (mib > 0 && touch_new((size_t)mib << 20, page) == NULL) {
            say(ready_fd, 'E');
            return 5;
        }
        say(ready_fd, 'R');
        for (;;) {
            do {
                n = read(go_fd, &c, 1);
            } while (n < 0 && errno == EINTR);
            if (n != 1)
                break;
            if (c == 'p') {
                say(ready_fd, touch_new((size_t)page, page) ? 'P' : 'E');
            } else if (c == 's') {
                char *q = touch_new((size_t)page, page);
                if (q)
                    munmap(q, (size_t)page);
                say(ready_fd, q ? 'Y' : 'E');
            }
        }
        close(go_fd);
    } else if (strcmp(mode, "trigger") == 0) {
        close(go_fd);
        say(ready_fd, 'S');
        size_t step = (size_t)step_kib << 10;
        size_t cap = (size_t)mib << 20, held = 0;
        while (held + step <= cap) {
            if (touch_new(step, page) == NULL) {
                say(ready_fd, 'E');
                return 5;
            }
            held += step;
        }
        say(ready_fd, 'D');
    } else {
        return 2;
    }
    for (;;)
        pause();
}
