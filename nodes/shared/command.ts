/**
 * Commands to a node. The convention is `msg.command = "<name>"` (e.g. "reset", "train").
 * Older forms are still accepted: `msg.<name> === true` (e.g. `msg.reset = true`) and
 * `msg.topic = "<name>"`. An unknown `msg.command` is an error, so a typo is not taken as data.
 */
import { itemText } from '../../lib/util/text';

export class UnknownCommandError extends Error {
  readonly code = 'command-unknown';
  readonly params: { command: string; commands: string };

  constructor(command: string, commands: readonly string[]) {
    super(`unknown command "${itemText(command)}"; expected ${commands.join(', ')}`);
    this.name = 'UnknownCommandError';
    this.params = { command: itemText(command), commands: commands.join(', ') };
  }
}

/** The command `msg` carries, or undefined when it is data. */
export function commandOf<C extends string>(
  msg: Record<string, unknown>,
  commands: readonly C[],
): C | undefined {
  const known = (value: unknown): value is C => typeof value === 'string' && commands.includes(value as C);
  if (msg.command !== undefined && msg.command !== null && msg.command !== '') {
    if (known(msg.command)) return msg.command;
    throw new UnknownCommandError(String(msg.command), commands);
  }
  const flagged = commands.find((command) => msg[command] === true);
  if (flagged) return flagged;
  return known(msg.topic) ? msg.topic : undefined;
}
