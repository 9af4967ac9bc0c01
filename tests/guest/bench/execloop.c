// Exec loop of the guest exec benchmark, linked statically so that it runs
// the same whatever the guest's libraries.
//
//   execloop PROGRAM COUNT   runs PROGRAM COUNT times, one fork+exec+wait
//                            after the other, and prints the microseconds
//                            per exec
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: execloop PROGRAM COUNT\n");
    return 2;
  }
  const char* program = argv[1];
  long count = strtol(argv[2], NULL, 10);
  if (count <= 0) {
    fprintf(stderr, "execloop: COUNT must be a positive number, not '%s'\n", argv[2]);
    return 2;
  }
  struct timespec start, end;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (long i = 0; i < count; ++i) {
    pid_t pid = fork();
    if (pid < 0) {
      perror("execloop: fork");
      return 1;
    }
    if (pid == 0) {
      execl(program, program, (char*)NULL);
      _exit(127);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "execloop: %s failed (status %d)\n", program, status);
      return 1;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &end);
  double us = (double)(end.tv_sec - start.tv_sec) * 1e6 + (double)(end.tv_nsec - start.tv_nsec) / 1e3;
  printf("%.1f\n", us / (double)count);
  return 0;
}
