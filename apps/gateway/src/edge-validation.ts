import type { FieldViolation } from "@demo/rpc-kit";

/**
 * Checks at the edge: reject what is plainly malformed before it costs a hop.
 * The owner (users) still decides what is valid; its verdict is relayed.
 */

const ID = /^[A-Za-z0-9_-]{1,64}$/;

export function checkUserId(userId: string): FieldViolation[] {
  if (userId.length === 0) return [{ field: "user_id", description: "must not be empty" }];
  if (!ID.test(userId)) return [{ field: "user_id", description: "must be 1 to 64 letters, digits, '-' or '_'" }];
  return [];
}

export function checkNewUser(name: string, email: string): FieldViolation[] {
  const violations: FieldViolation[] = [];
  if (name.trim().length === 0) violations.push({ field: "name", description: "must not be empty" });
  else if (name.length > 100) violations.push({ field: "name", description: "must be at most 100 characters" });
  const at = email.indexOf("@");
  if (email.length === 0) violations.push({ field: "email", description: "must not be empty" });
  else if (email.length > 254) violations.push({ field: "email", description: "must be at most 254 characters" });
  else if (at < 1 || at === email.length - 1)
    violations.push({ field: "email", description: "must be a valid email address" });
  return violations;
}
