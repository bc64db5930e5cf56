/**
 * How a setting is declared, and the reader that applies the declarations.
 *
 * Each setting is one declaration in the file of its concern (cluster.ts, network.ts, ...):
 * its type (the one Pulumi.yaml declares; tests/config.test.ts checks they agree), its own
 * rule (a function of its value alone, returning the "must ..." text or undefined) and what a
 * change of it does on a live stack. Rules that relate settings sit beside them in the same
 * file and run after the concern's settings are read. Defaults and descriptions stay in
 * Pulumi.yaml, where the Pulumi CLI applies them.
 */

/** Raw config as the Pulumi runtime holds it: fully qualified keys to string values. */
export interface RawConfig {
  project: string;
  stack: string;
  values: Record<string, string>;
  /** The stack's last exported `kubernetesVersion`; undefined for a stack never deployed. */
  deployedKubernetesVersion?: string;
  /**
   * The stack's last exported `creationSettings` (components/config/deployed.ts); undefined for
   * a stack that never exported them. Refused settings are compared with it.
   */
  deployedSettings?: Record<string, unknown>;
}

export type KeyType = "string" | "integer" | "boolean" | "array";
type ValueOf<K extends KeyType> = K extends "string"
  ? string
  : K extends "integer"
    ? number
    : K extends "boolean"
      ? boolean
      : string[];

/**
 * What a change of a setting does on a stack that runs: `nothing` (read only when something is
 * created), `live` (applied in place, no node disturbed), `rolling` (one control-plane node at a
 * time), `refused` (a running cluster cannot take it; set it right when the stack is created).
 */
export type ChangeEffect = "nothing" | "live" | "rolling" | "refused";
export interface LiveChange {
  effect: ChangeEffect;
  /** One line: why, in terms of what the program does. */
  why: string;
}

export interface Setting<K extends KeyType = KeyType> {
  type: K;
  change: LiveChange;
  /** Why the value alone is wrong ("must ..."; one text per problem), or undefined. */
  rule?: (value: ValueOf<K>) => Problems;
}

/** What a rule finds: nothing, one problem, or several (a list setting's entries). */
export type Problems = string | readonly string[] | undefined;

export type Settings = Record<string, Setting>;
/** The typed values of a group of settings. */
export type Values<S extends Settings> = { [K in keyof S]: ValueOf<S[K]["type"]> };

const change = (effect: ChangeEffect) => (why: string) => ({ effect, why });
export const nothing = change("nothing");
export const live = change("live");
export const rolling = change("rolling");
export const refused = change("refused");

export const string = (change: LiveChange, rule?: (v: string) => Problems): Setting<"string"> => ({
  type: "string",
  change,
  rule,
});
export const integer = (change: LiveChange, rule?: (v: number) => Problems): Setting<"integer"> => ({
  type: "integer",
  change,
  rule,
});
export const boolean = (change: LiveChange): Setting<"boolean"> => ({ type: "boolean", change });
export const list = (change: LiveChange, rule?: (v: string[]) => Problems): Setting<"array"> => ({
  type: "array",
  change,
  rule,
});

/** A string out of a fixed set. */
export const oneOf =
  <T extends string>(allowed: readonly T[]) =>
  (v: string): string | undefined =>
    (allowed as readonly string[]).includes(v) ? undefined : `must be one of ${allowed.join(", ")}`;
/** A number from `min` to `max`; `unit` follows the bound (" seconds"). */
export const inRange =
  (min: number, max: number, unit = "") =>
  (v: number): string | undefined =>
    v >= min && v <= max ? undefined : `must be from ${min} to ${max}${unit}`;
/** Narrows a value a {@link oneOf} rule accepted. */
export const isOneOf = <T extends string>(allowed: readonly T[], v: string): v is T =>
  (allowed as readonly string[]).includes(v);

/** Collects every problem while reading raw strings into typed values. */
export class Reader {
  readonly problems: string[] = [];

  constructor(readonly raw: RawConfig) {}

  fullKey(key: string): string {
    return `${this.raw.project}:${key}`;
  }

  problem(key: string, value: unknown, text: string): void {
    this.problems.push(`${this.fullKey(key)} = ${JSON.stringify(value)}: ${text}`);
  }

  /** Keys in this project's namespace that no declaration knows are typos. */
  rejectUnknownKeys(known: readonly string[]): void {
    const prefix = `${this.raw.project}:`;
    for (const fullKey of Object.keys(this.raw.values).sort()) {
      if (fullKey.startsWith(prefix) && !known.includes(fullKey.slice(prefix.length))) {
        this.problems.push(`${fullKey} is not a setting of this project; known settings: ${known.join(", ")}`);
      }
    }
  }

  /**
   * Reads each setting in declaration order, converts it to its type and applies its own rule.
   * A value that is missing, mistyped or breaks its rule is reported and left out.
   */
  read<S extends Settings>(settings: S): Partial<Values<S>> {
    const out: Partial<Record<string, unknown>> = {};
    for (const [key, setting] of Object.entries(settings)) {
      const value = this.convert(key, setting.type);
      if (value === undefined) continue;
      // The declaration helpers pair each type with a rule over that type's values.
      const found = (setting.rule as ((v: unknown) => Problems) | undefined)?.(value) ?? [];
      const errors = typeof found === "string" ? [found] : found;
      for (const error of errors) this.problem(key, value, error);
      if (errors.length === 0) out[key] = value;
    }
    return out as Partial<Values<S>>;
  }

  private convert(key: string, type: KeyType): string | number | boolean | string[] | undefined {
    const text = this.raw.values[this.fullKey(key)];
    if (text === undefined) {
      this.problems.push(
        `${this.fullKey(key)} is not set: set it in Pulumi.${this.raw.stack}.yaml (see the README's configuration reference)`,
      );
      return undefined;
    }
    const parsed = parseAs(type, text);
    if (parsed === undefined) this.problem(key, text, typeErrors[type]);
    return parsed;
  }
}

const typeErrors: Record<KeyType, string> = {
  string: "",
  integer: "must be a whole number",
  boolean: "must be true or false",
  array: "must be a list of strings",
};

function parseAs(type: KeyType, text: string): string | number | boolean | string[] | undefined {
  switch (type) {
    case "string":
      return text;
    case "integer":
      return /^-?\d+$/.test(text.trim()) ? Number(text) : undefined;
    case "boolean":
      return text === "true" || text === "false" ? text === "true" : undefined;
    case "array": {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        return undefined;
      }
      return Array.isArray(parsed) && parsed.every((x) => typeof x === "string") ? (parsed as string[]) : undefined;
    }
  }
}

/** All of `values`, typed, when every one of them was read and passed; undefined otherwise. */
export function complete<S extends Settings>(settings: S, values: Partial<Values<S>>): Values<S> | undefined {
  return Object.keys(settings).every((k) => values[k] !== undefined) ? (values as Values<S>) : undefined;
}
