/**
 * A host of the test's own: a network namespace joined to this one by a veth
 * pair, with an address on each end, whose link the drill can cut and
 * restore. Test-only; the services themselves never touch networking.
 */
import { execFileSync } from "node:child_process";

export interface IsolatedHost {
  /** Address of the namespace's end, where its services listen. */
  readonly address: string;
  /** Address of this side's end: what the namespace's services reach this host at. */
  readonly outsideAddress: string;
  /** Prefix that runs a command inside the namespace. */
  readonly prefix: readonly string[];
  /** Takes this side's end of the link down: packets to `address` no longer leave. */
  cut(): void;
  restore(): void;
  destroy(): void;
}

const ip = (...args: string[]) => execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });

/** Creates the namespace, or returns why it cannot be made here (not root, no `ip`, no netns support). */
export function createIsolatedHost(): IsolatedHost | { readonly unavailable: string } {
  const id = (process.pid % 10_000).toString();
  const ns = `rpcdrill${id}`;
  const outside = `vd${id}h`;
  const inside = `vd${id}n`;
  // 10.213.x.0/30 with x from the pid, so that parallel runs on one machine do not collide.
  const subnet = `10.213.${process.pid % 250}`;
  try {
    ip("netns", "add", ns);
  } catch (err) {
    return { unavailable: `cannot create a network namespace (${String((err as Error).message).trim()})` };
  }
  const destroy = () => {
    try {
      ip("netns", "del", ns); // takes the veth pair with it
    } catch {
      // already gone
    }
  };
  try {
    ip("link", "add", outside, "type", "veth", "peer", "name", inside);
    ip("link", "set", inside, "netns", ns);
    ip("addr", "add", `${subnet}.1/30`, "dev", outside);
    ip("link", "set", outside, "up");
    ip("netns", "exec", ns, "ip", "addr", "add", `${subnet}.2/30`, "dev", inside);
    ip("netns", "exec", ns, "ip", "link", "set", inside, "up");
    ip("netns", "exec", ns, "ip", "link", "set", "lo", "up");
  } catch (err) {
    destroy();
    return { unavailable: `cannot wire a veth pair into the namespace (${String((err as Error).message).trim()})` };
  }
  return {
    address: `${subnet}.2`,
    outsideAddress: `${subnet}.1`,
    prefix: ["ip", "netns", "exec", ns],
    cut: () => ip("link", "set", outside, "down"),
    restore: () => ip("link", "set", outside, "up"),
    destroy,
  };
}
