#!/bin/bash
# avap-probe: the images' health check, in bash alone. The images carry no
# curl or wget; bash's /dev/tcp is enough for one request on this machine.
#
#   avap-probe http PORT PATH [ADDRESS]   0 if GET PATH answers 200, else 1
#   avap-probe tcp PORT [ADDRESS]         0 if the port takes a connection, else 1
#
# ADDRESS defaults to 127.0.0.1 (set it when AVAP_BIND is one address).
# Both programs answer plain HTTP probes: the host on its port (8888), the
# brain on its ops port (9090, BRAIN_HTTP_LISTEN; its gRPC port speaks TLS
# in a deployment). `tcp` only says that a port listens. The caller bounds
# the time (HEALTHCHECK --timeout, compose's healthcheck.timeout); the
# answer's first line is awaited for at most 2 s.
set -u

usage() {
  echo "usage: avap-probe http PORT PATH [ADDRESS] | tcp PORT [ADDRESS]" >&2
  exit 2
}

mode=${1:-}
port=${2:-}
case "$port" in '' | *[!0-9]*) usage ;; esac
case "$mode" in
  http)
    path=${3:-}
    address=${4:-127.0.0.1}
    case "$path" in /*) ;; *) usage ;; esac
    ;;
  tcp) address=${3:-127.0.0.1} ;;
  *) usage ;;
esac

{ exec 3<>"/dev/tcp/$address/$port"; } 2>/dev/null || exit 1
[ "$mode" = tcp ] && exit 0

printf 'GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$path" >&3
IFS=' ' read -r -t 2 _ status _ <&3 || exit 1
[ "$status" = 200 ]
