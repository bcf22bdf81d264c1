/**
 * Client names: what a certificate, a token or a `[[clients]]` entry calls a client, and what the
 * ACL, the rate limiter, the query log and metrics then use. One rule for all of them, so a name
 * from a certificate can be matched against one in the configuration.
 */

/** The longest client name (a DNS name in a certificate SAN can be 253 characters). */
export const CLIENT_NAME_MAX_LENGTH = 253;

/** The metrics label of every client without a declared name; not usable as a name itself. */
export const ANONYMOUS_LABEL = "anonymous";

/**
 * Why `name` is not a valid client name, or null: 1-253 printable ASCII characters (space
 * allowed inside, as in "Alice Smith"), no quote or backslash (names go into logs and labels),
 * not "anonymous" (the label of everyone unnamed).
 */
export function clientNameProblem(name: string): string | null {
  if (name.length === 0) return "a client name cannot be empty";
  if (name.length > CLIENT_NAME_MAX_LENGTH) {
    return `client name of ${name.length} characters is longer than ${CLIENT_NAME_MAX_LENGTH}`;
  }
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) {
      return `client name ${JSON.stringify(name)} contains ${JSON.stringify(name[i])}; ` +
        `use printable ASCII without quotes or backslashes`;
    }
  }
  if (name[0] === " " || name[name.length - 1] === " ") {
    return `client name ${JSON.stringify(name)} starts or ends with a space`;
  }
  if (name === ANONYMOUS_LABEL) return `"${ANONYMOUS_LABEL}" is reserved for unnamed clients`;
  return null;
}
