/** The demo's profile rule, for the bare benchmark services (no dependency: the hand-wired chain imports it too). */

/** "Ada Lovelace" → { displayName: "Ada L.", initials: "AL" }, as profiles does. */
export function profileFields(name: string): { displayName: string; initials: string } {
  const words = name.split(" ");
  return { displayName: `${words[0]} ${words[1]?.charAt(0)}.`, initials: words.map((w) => w.charAt(0)).join("") };
}
