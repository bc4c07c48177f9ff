/** Polls `check` every 20 ms until it gives a value (not undefined or false), or fails after `ms`. */
export function until<T>(what: string, check: () => T | undefined | false, ms = 10000): Promise<T> {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      const value = check();
      if (value !== undefined && value !== false) return resolve(value);
      if (Date.now() > deadline) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 20);
    };
    tick();
  });
}
