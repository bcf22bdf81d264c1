/*
 * LD_PRELOAD shim for the benchmark's upstream unbound: sets TCP_NODELAY on every accepted
 * connection. Debian 12's unbound 1.17.1 does not set it on its DNS-over-TLS sockets, so
 * Nagle's algorithm holds each answer while an earlier one is unacknowledged, and the
 * client's delayed ACK (up to 40 ms) then decides when it leaves. That adds ~0.5 ms to a
 * typical pipelined answer and 40 ms stalls to some, for every forwarder under test, and
 * says nothing about the forwarders. bench/run.sh builds this with `cc` when it can
 * (BENCH_UPSTREAM_NODELAY=0 turns it off).
 *
 *   cc -shared -fPIC -O2 -o upstream_nodelay.so upstream_nodelay.c -ldl
 *   LD_PRELOAD=./upstream_nodelay.so unbound -d -c unbound.conf
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static void set_nodelay(int fd) {
  int one = 1;
  /* Fails harmlessly (ENOPROTOOPT, ENOTSOCK) on anything that is not a TCP socket. */
  if (fd >= 0) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int accept(int sockfd, struct sockaddr *addr, socklen_t *addrlen) {
  static int (*real_accept)(int, struct sockaddr *, socklen_t *);
  if (!real_accept) real_accept = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
  int fd = real_accept(sockfd, addr, addrlen);
  set_nodelay(fd);
  return fd;
}

int accept4(int sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags) {
  static int (*real_accept4)(int, struct sockaddr *, socklen_t *, int);
  if (!real_accept4) {
    real_accept4 = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
  }
  int fd = real_accept4(sockfd, addr, addrlen, flags);
  set_nodelay(fd);
  return fd;
}
