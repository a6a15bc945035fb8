import type { FieldViolation } from "@demo/rpc-kit";

/**
 * The owner's rules for user input: authoritative, so they are checked here
 * whatever the edge already checked. Descriptions never echo the value.
 */

export const NAME_MAX = 100;
export const EMAIL_MAX = 254;
const EMAIL = /^[^\s@]+@[^\s@.]+(\.[^\s@.]+)+$/;

export function checkName(name: string): FieldViolation[] {
  const trimmed = name.trim();
  if (trimmed.length === 0) return [{ field: "name", description: "must not be empty" }];
  if (trimmed.length > NAME_MAX) return [{ field: "name", description: `must be at most ${NAME_MAX} characters` }];
  return [];
}

export function checkEmail(email: string): FieldViolation[] {
  if (email.length === 0) return [{ field: "email", description: "must not be empty" }];
  if (email.length > EMAIL_MAX) return [{ field: "email", description: `must be at most ${EMAIL_MAX} characters` }];
  if (!EMAIL.test(email)) return [{ field: "email", description: "must be a valid email address" }];
  return [];
}

export function checkUserId(id: string): FieldViolation[] {
  return id.length === 0 ? [{ field: "id", description: "must not be empty" }] : [];
}
