"""Opens N HTTP/1.1 connections that ask for an endless interval-0 stream and
never read a byte, with a small receive buffer so that the kernel holds little
for each: the server fills what there is, then waits on 'drain' for good.
Node cannot set SO_RCVBUF on a TCP socket; Python can.

    python3 stalled_readers.py PORT COUNT PATH

Prints "ready" once every request is sent, then holds the connections until
its standard input closes (the test ends it by closing it, or by its PID).
"""

import socket
import sys


def main() -> None:
    port, count, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    held = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        held.append(s)
    print("ready", flush=True)
    sys.stdin.read()
    for s in held:
        s.close()


if __name__ == "__main__":
    main()
