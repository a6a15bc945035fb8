/** What benchmarks and tests read of a process from /proc: CPU time, peak RSS, open file descriptors, TCP connections. */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

/**
 * User + system CPU time of a process, in microseconds; with
 * `reapedChildren`, that of the children it has waited for too (a server
 * whose workers come and go).
 */
export function cpuMicros(pid: number, { reapedChildren = false } = {}): number {
  const fields = statFields(pid);
  const ticks =
    Number(fields[11]) + Number(fields[12]) + (reapedChildren ? Number(fields[13]) + Number(fields[14]) : 0);
  return (ticks * 1_000_000) / TICKS_PER_SECOND;
}

/** The parent's pid of a process. */
export function parentPid(pid: number): number {
  return Number(statFields(pid)[1]);
}

/** /proc/<pid>/stat's fields after the command name (which may contain spaces): state, ppid, … */
function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

function statusField(pid: number, name: string): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith(`${name}:`));
  return line ? Number(line.split(/\s+/)[1]) * 1024 : 0;
}

/** Peak resident set size in bytes (VmHWM). */
export function peakRssBytes(pid: number): number {
  return statusField(pid, "VmHWM");
}

/** Resident set size now, in bytes. */
export function rssBytes(pid: number): number {
  return statusField(pid, "VmRSS");
}

/** Open file descriptors. */
export function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/**
 * The local ports of the established TCP connections that process `pid` holds
 * to `remotePort` (one per connection), read from /proc: the process's socket
 * fds matched against the kernel's TCP tables.
 */
export function connectionLocalPorts(pid: number, remotePort: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m?.[1]) inodes.add(m[1]);
    } catch {
      // fd closed meanwhile
    }
  }
  const ports: number[] = [];
  const portOf = (address: string) => Number.parseInt(address.slice(address.lastIndexOf(":") + 1), 16);
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const row of readFileSync(table, "utf8").split("\n").slice(1)) {
      const cols = row.trim().split(/\s+/);
      if (cols.length < 10) continue;
      const state = cols[3];
      if (state === "01" && portOf(cols[2] ?? "") === remotePort && inodes.has(cols[9] ?? "")) {
        ports.push(portOf(cols[1] ?? ""));
      }
    }
  }
  return ports;
}
