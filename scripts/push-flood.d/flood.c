#include <sys/socket.h>
#include <sys/un.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
  double secs = atof(argv[1]);
  setgid(65534); if (setuid(65534) != 0) { perror("setuid"); return 1; }
  int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  int n = argc - 2; struct sockaddr_un a[16]; socklen_t l[16];
  for (int i = 0; i < n; i++) { memset(&a[i], 0, sizeof a[i]); a[i].sun_family = AF_UNIX;
    size_t k = strlen(argv[i+2]); memcpy(a[i].sun_path + 1, argv[i+2], k); l[i] = sizeof(sa_family_t) + 1 + k; }
  struct timespec t0, t; clock_gettime(CLOCK_MONOTONIC, &t0); long sent = 0, tries = 0;
  for (;;) { for (int i = 0; i < n; i++) { tries++; if (sendto(s, "x", 1, 0, (struct sockaddr *)&a[i], l[i]) == 1) sent++; }
    if ((tries & 1023) == 0) { clock_gettime(CLOCK_MONOTONIC, &t); if (t.tv_sec - t0.tv_sec + (t.tv_nsec - t0.tv_nsec) / 1e9 > secs) break; } }
  printf("sent %ld of %ld\n", sent, tries); return 0; }
