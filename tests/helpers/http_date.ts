/**
 * Byte-for-byte response checks with a `Date` field in them: the server
 * sends the current time (RFC 9110 §6.6.1), so expected texts hold
 * {@linkcode DATE}, a line of the same length, and received texts go
 * through {@linkcode maskDate}, which checks each date's format and how
 * far it is from now before putting the same placeholder in its place.
 */

/** A `date` line as the server writes it (lower-case name, as Headers gives it), time masked. */
export const DATE = "date: Www, DD Mmm YYYY hh:mm:ss GMT\r\n";

const DATE_LINE =
  /(date|Date): ((?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT)\r\n/g;

/**
 * `text` with every IMF-fixdate `date` line replaced by {@linkcode DATE}
 * (or its `Date:` form); throws if a date is more than a minute from now.
 */
export function maskDate(text: string): string {
  return text.replace(DATE_LINE, (_line, name: string, value: string) => {
    const skew = Math.abs(Date.parse(value) - Date.now());
    if (!(skew < 60_000)) throw new Error(`the Date sent is not now: ${value}`);
    return name === "Date" ? "D" + DATE.slice(1) : DATE;
  });
}
