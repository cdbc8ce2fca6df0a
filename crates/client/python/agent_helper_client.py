"""Agent Helper local API client for Python programs of the agent's own user.

The helper listens on a per-user Unix socket (a named pipe on Windows, not
covered here); frames are a 4-byte little-endian length and UTF-8 JSON, the
same as the browsers' native messaging. Requests carry an id; responses echo
it; events arrive in between and are queued.

    from agent_helper_client import Client
    with Client.connect(Client.socket_path("/path/to/profile")) as helper:
        print(helper.request("getStatus")["registration"]["state"])
        print(helper.next_event())

Standard library only; Python 3.8+.
"""

import collections
import json
import os
import socket
import struct

MAX_FRAME_LEN = 1024 * 1024


class HelperError(Exception):
    """An error answer: `code` is stable (docs/protocol.md), `message` is for people."""

    def __init__(self, code, message, data=None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.data = code, message, data


class Client:
    def __init__(self, sock):
        self._sock = sock
        self._next_id = 1
        self._events = collections.deque()

    @staticmethod
    def socket_path(profile_dir=None):
        """The socket of `--profile DIR`, or of the default profile."""
        if profile_dir:
            return os.path.join(os.path.abspath(profile_dir), "agent-helper.sock")
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        if runtime:
            return os.path.join(runtime, "agent-helper", "agent-helper.sock")
        state = os.environ.get("XDG_STATE_HOME", os.path.expanduser("~/.local/state"))
        return os.path.join(state, "agent-helper", "agent-helper.sock")

    @classmethod
    def connect(cls, path, timeout=30.0):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(path)
        return cls(sock)

    def close(self):
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request(self, method, params=None):
        """Sends one request and returns its result, or raises HelperError."""
        request_id = self._next_id
        self._next_id += 1
        self._send({"id": request_id, "method": method, "params": params or {}})
        while True:
            message = self._read()
            if "event" in message:
                self._events.append(message)
            elif message.get("id") in (request_id, None):
                if "error" in message:
                    e = message["error"]
                    raise HelperError(e.get("code"), e.get("message"), e.get("data"))
                return message.get("result")

    def next_event(self):
        """The next event as (name, data), waiting for one when none is queued."""
        while not self._events:
            message = self._read()
            if "event" in message:
                self._events.append(message)
        e = self._events.popleft()
        return e["event"], e.get("data")

    def _send(self, message):
        payload = json.dumps(message).encode()
        if len(payload) > MAX_FRAME_LEN:
            raise HelperError("frame-too-large", f"request of {len(payload)} bytes exceeds {MAX_FRAME_LEN}")
        self._sock.sendall(struct.pack("<I", len(payload)) + payload)

    def _read_exactly(self, n):
        chunks = []
        while n:
            chunk = self._sock.recv(min(n, 65536))
            if not chunk:
                raise ConnectionError("the helper closed the connection")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _read(self):
        (length,) = struct.unpack("<I", self._read_exactly(4))
        if length > MAX_FRAME_LEN:
            raise ConnectionError(f"oversize frame of {length} bytes from the helper")
        return json.loads(self._read_exactly(length))


if __name__ == "__main__":
    # Example: python3 agent_helper_client.py [PROFILE_DIR] — state, then one event.
    import sys

    with Client.connect(Client.socket_path(sys.argv[1] if len(sys.argv) > 1 else None)) as helper:
        hello = helper.request("hello", {"client": "python example", "minHelperVersion": "0.1.0"})
        print("helper", hello["helperVersion"], "registration", hello["status"]["registration"]["state"])
        try:
            helper.request("noSuchMethod")
        except HelperError as e:
            print("error", e.code)
        helper.request("setLogLevel", {"level": "info"})
        print("event", *helper.next_event())
