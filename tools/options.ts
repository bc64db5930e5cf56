/**
 * What the project's benchmarks share: their command-line options (`--name value`, read from
 * process.argv) and the median of their runs.
 */

/** A positive number option; throws naming it when the value is not one. */
export function numberOption(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = Number(process.argv[i + 1]);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} needs a positive number`);
  return value;
}

/** A string option; throws naming it when it has no value. */
export function stringOption(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = process.argv[i + 1];
  if (value === undefined || value.startsWith("--")) throw new Error(`--${name} needs a value`);
  return value;
}

/** A flag (`--name`, no value): whether it was given. */
export function flagOption(name: string): boolean {
  return process.argv.includes(`--${name}`);
}

/** A count option (a whole number of at least 1, such as --runs); throws naming it otherwise. */
export function countOption(name: string, fallback: number): number {
  const value = numberOption(name, fallback);
  if (!Number.isInteger(value)) throw new Error(`--${name} needs a whole number`);
  return value;
}

/** The median of VALUES (for an even count, the mean of the middle two). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
