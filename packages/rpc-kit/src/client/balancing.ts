/**
 * Choosing an endpoint for a call, among the ready ones.
 *
 * - `round_robin` (default): each in turn; even spread when endpoints are alike.
 * - `least_loaded`: power of two choices on in-flight calls; steers away from
 *   a slow replica, whose calls pile up, without a global scan.
 */
export type BalancingPolicy = "round_robin" | "least_loaded";

export const BALANCING_POLICIES: readonly BalancingPolicy[] = ["round_robin", "least_loaded"];

export interface Pickable {
  readonly inFlight: number;
}

export interface Picker<E extends Pickable> {
  pick(ready: readonly E[]): E;
}

export function createPicker<E extends Pickable>(
  policy: BalancingPolicy,
  random: () => number = Math.random,
): Picker<E> {
  if (policy === "least_loaded") {
    return {
      pick(ready) {
        const a = ready[Math.floor(random() * ready.length)] as E;
        if (ready.length === 1) return a;
        let b = ready[Math.floor(random() * (ready.length - 1))] as E;
        if (b === a) b = ready[ready.length - 1] as E;
        if (a.inFlight !== b.inFlight) return a.inFlight < b.inFlight ? a : b;
        return random() < 0.5 ? a : b;
      },
    };
  }
  let next = Math.floor(random() * 1_000);
  return {
    pick(ready) {
      next = (next + 1) % 1_000_000_007;
      return ready[next % ready.length] as E;
    },
  };
}
