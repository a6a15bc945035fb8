/**
 * SIGTERM and SIGINT: the first starts a graceful shutdown, a second one
 * (an impatient operator, or kubelet after the grace period) ends the
 * process at once.
 */
export interface ShutdownSignalHandlers {
  onFirst(signal: NodeJS.Signals): void;
  onSecond(signal: NodeJS.Signals): void;
}

export function onShutdownSignals(handlers: ShutdownSignalHandlers): () => void {
  let received = false;
  const handler = (signal: NodeJS.Signals) => {
    if (received) {
      handlers.onSecond(signal);
      return;
    }
    received = true;
    handlers.onFirst(signal);
  };
  process.on("SIGTERM", handler);
  process.on("SIGINT", handler);
  return () => {
    process.off("SIGTERM", handler);
    process.off("SIGINT", handler);
  };
}
