/**
 * Bounded texts for error and status messages: a list or a name taken from a message or a file
 * can be arbitrarily long, and an error text must not grow with it.
 */

/** At most this many items of a list are named in a message. */
export const LIST_TEXT_ITEMS = 8;
/** At most this many characters of one item (a channel name, a column, a key). */
export const ITEM_TEXT_CHARS = 40;

/** One item, cut to `max` characters ("…" marks the cut). */
export function itemText(item: unknown, max = ITEM_TEXT_CHARS): string {
  const text = String(item);
  return text.length > max ? `${text.slice(0, Math.max(0, max - 1))}…` : text;
}

/**
 * The first `max` items, each cut by itemText, then "… and N more": `listText(['a', 'b', 'c'], 2)`
 * gives "a, b, … and 1 more".
 */
export function listText(items: ArrayLike<unknown>, max = LIST_TEXT_ITEMS, separator = ', '): string {
  const shown: string[] = [];
  for (let i = 0; i < Math.min(max, items.length); i++) shown.push(itemText(items[i]));
  const rest = items.length - shown.length;
  return rest > 0 ? `${shown.join(separator)}${separator}… and ${rest} more` : shown.join(separator);
}

/**
 * The most channels (named values of one sample) a node learns a layout from; a larger sample
 * is refused rather than fixing a layout that makes every later message and text huge.
 */
export const MAX_CHANNELS = 4096;
