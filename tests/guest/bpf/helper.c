// Test helper of the eBPF LSM guest test, linked statically so that a copy
// of it runs from anywhere (memfd, an unlinked file).
//
//   helper exit0                       exits 0
//   helper sleep-ms N                  sleeps N ms
//   helper memfd-exec fexecve|procfd NAME
//                                      copies /proc/self/exe and the first
//                                      byte of the mode into a memfd called
//                                      NAME and runs it (exit0) through
//                                      execveat(AT_EMPTY_PATH) or
//                                      /proc/self/fd/N
//   helper fexecve-unlinked PATH       opens PATH, unlinks it, runs it (exit0)
//                                      through execveat(AT_EMPTY_PATH)
//   helper read-burst DIR N            opens, reads and closes DIR/0 .. DIR/N-1
//                                      as fast as it can
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char** environ;

static int fail(const char* what) {
  fprintf(stderr, "helper: %s: %s\n", what, strerror(errno));
  return 1;
}

static int copy_self(int out) {
  int in = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (in < 0) return -1;
  char buffer[65536];
  ssize_t n;
  while ((n = read(in, buffer, sizeof buffer)) > 0) {
    if (write(out, buffer, (size_t)n) != n) {
      close(in);
      return -1;
    }
  }
  close(in);
  return n < 0 ? -1 : 0;
}

// Runs `fd` in a child, through execveat or /proc/self/fd/N, and returns
// the child's exit status.
static int run_fd(int fd, int through_proc) {
  pid_t child = fork();
  if (child < 0) return fail("fork");
  if (child == 0) {
    char* argv[] = {"helper", "exit0", NULL};
    if (through_proc) {
      char path[64];
      snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
      execve(path, argv, environ);
    } else {
      syscall(SYS_execveat, fd, "", argv, environ, AT_EMPTY_PATH);
    }
    _exit(fail("exec") + 126);
  }
  int status = 0;
  if (waitpid(child, &status, 0) < 0) return fail("waitpid");
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int main(int argc, char** argv) {
  if (argc >= 2 && strcmp(argv[1], "exit0") == 0) return 0;

  if (argc == 3 && strcmp(argv[1], "sleep-ms") == 0) {
    long ms = atol(argv[2]);
    struct timespec delay = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&delay, NULL);
    return 0;
  }

  if (argc == 4 && strcmp(argv[1], "memfd-exec") == 0) {
    int fd = memfd_create(argv[3], 0);
    if (fd < 0) return fail("memfd_create");
    // One byte after the program, different for each way of running it,
    // so that the two runs have different digests and both are listed.
    if (copy_self(fd) != 0 || write(fd, argv[2], 1) != 1) return fail("copying the helper into the memfd");
    return run_fd(fd, strcmp(argv[2], "procfd") == 0);
  }

  if (argc == 3 && strcmp(argv[1], "fexecve-unlinked") == 0) {
    int fd = open(argv[2], O_RDONLY);
    if (fd < 0) return fail(argv[2]);
    if (unlink(argv[2]) != 0) return fail("unlink");
    return run_fd(fd, 0);
  }

  if (argc == 4 && strcmp(argv[1], "read-burst") == 0) {
    long count = atol(argv[3]);
    char path[4096];
    char byte;
    long opened = 0;
    for (long i = 0; i < count; i++) {
      snprintf(path, sizeof path, "%s/%ld", argv[2], i);
      int fd = open(path, O_RDONLY);
      if (fd < 0) continue;
      if (read(fd, &byte, 1) >= 0) opened++;
      close(fd);
    }
    printf("read-burst: %ld of %ld files read\n", opened, count);
    return opened == count ? 0 : 1;
  }

  fprintf(stderr, "helper: unknown command\n");
  return 2;
}
