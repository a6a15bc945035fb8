/** Shell commands as the README shows them, run the way a reader pastes them. */
import { execFile } from "node:child_process";
import { repoRoot } from "./processes.ts";

/** Runs `command` with `sh -c` in the repository (30 s at most), with `env` added to this process's. */
export function sh(
  command: string,
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      "sh",
      ["-c", command],
      { cwd: repoRoot, env: { ...process.env, ...env }, timeout: 30_000 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}
