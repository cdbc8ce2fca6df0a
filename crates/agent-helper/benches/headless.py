#!/usr/bin/env python3
"""Benchmark of the headless helper: start-to-ready time, idle RSS, idle CPU.

    crates/agent-helper/benches/headless.py [--binary target/release/agent-helper] [--starts 30] [--idle 60]

"Ready" is measured from spawn to the first answered getStatus on the socket
(what a client sees), and also to the ready line on stdout. Idle CPU is the
helper's user+system time over the idle window, from /proc, with one client
connected (as the browser bridge would be). Figures go to docs/benchmarks.md.
Targets (issue 2): ready <= 150 ms, RSS <= 15 MB, idle CPU < 0.1 %.
"""
import argparse, json, os, socket, statistics, struct, subprocess, sys, tempfile, time

def frame(obj):
    data = json.dumps(obj).encode()
    return struct.pack("<I", len(data)) + data

def read_frame(sock):
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            raise EOFError
        head += chunk
    (n,) = struct.unpack("<I", head)
    body = b""
    while len(body) < n:
        chunk = sock.recv(n - len(body))
        if not chunk:
            raise EOFError
        body += chunk
    return json.loads(body)

def request(sock, rid, method, params=None):
    sock.sendall(frame({"id": rid, "method": method, "params": params or {}}))
    while True:
        msg = read_frame(sock)
        if msg.get("id") == rid:
            return msg

def start(binary, profile):
    t0 = time.perf_counter()
    proc = subprocess.Popen([binary, "--headless", "--profile", profile],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    t_line = time.perf_counter()
    assert "ready" in line, line
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(os.path.join(profile, "agent-helper.sock"))
    assert "result" in request(sock, 1, "getStatus")
    t_answer = time.perf_counter()
    return proc, sock, (t_line - t0) * 1000, (t_answer - t0) * 1000

def proc_status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0

def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/agent-helper")
    ap.add_argument("--starts", type=int, default=30)
    ap.add_argument("--idle", type=float, default=60.0)
    a = ap.parse_args()

    line_ms, answer_ms = [], []
    for _ in range(a.starts):
        with tempfile.TemporaryDirectory() as d:
            proc, sock, t_line, t_answer = start(a.binary, d)
            line_ms.append(t_line)
            answer_ms.append(t_answer)
            sock.close()
            proc.terminate()
            proc.wait()

    with tempfile.TemporaryDirectory() as d:
        proc, sock, _, _ = start(a.binary, d)
        for i in range(100):  # warm: a client at work before going idle
            request(sock, i + 2, "getStatus")
        rss_ready = proc_status(proc.pid, "VmRSS")
        threads = proc_status(proc.pid, "Threads")
        hz = os.sysconf("SC_CLK_TCK")
        c0, w0 = cpu_ticks(proc.pid), time.perf_counter()
        time.sleep(a.idle)  # the measurement window itself
        c1, w1 = cpu_ticks(proc.pid), time.perf_counter()
        rss_idle = proc_status(proc.pid, "VmRSS")
        hwm = proc_status(proc.pid, "VmHWM")
        sock.close()
        proc.terminate()
        proc.wait()

    cpu_pct = (c1 - c0) / hz / (w1 - w0) * 100
    q = lambda xs, p: sorted(xs)[min(len(xs) - 1, int(p * len(xs)))]
    print(f"starts: {a.starts}")
    print(f"ready line  ms: median {statistics.median(line_ms):.1f}  p90 {q(line_ms, .9):.1f}  max {max(line_ms):.1f}")
    print(f"first answer ms: median {statistics.median(answer_ms):.1f}  p90 {q(answer_ms, .9):.1f}  max {max(answer_ms):.1f}")
    print(f"RSS after 100 requests: {rss_ready/1024:.1f} MiB; after {a.idle:.0f} s idle: {rss_idle/1024:.1f} MiB; peak {hwm/1024:.1f} MiB; threads {threads}")
    print(f"idle CPU over {w1-w0:.1f} s: {c1-c0} ticks = {cpu_pct:.3f} %")
    ok = q(answer_ms, .9) <= 150 and hwm / 1024 <= 15 and cpu_pct < 0.1
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1

if __name__ == "__main__":
    sys.exit(main())
