/**
 * Validation of 5-field cron schedules as Kubernetes CronJobs read them
 * (minute hour day-of-month month day-of-week).
 */

interface Field {
  name: string;
  min: number;
  max: number;
  names?: readonly string[];
}

const fields: readonly Field[] = [
  { name: "minute", min: 0, max: 59 },
  { name: "hour", min: 0, max: 23 },
  { name: "day of month", min: 1, max: 31 },
  {
    name: "month",
    min: 1,
    max: 12,
    names: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
  },
  // 7 is Sunday as well, as in Vixie cron and the Kubernetes parser.
  { name: "day of week", min: 0, max: 7, names: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"] },
];

/** Returns why `schedule` is not a valid 5-field cron expression, or undefined when it is. */
export function cronError(schedule: string): string | undefined {
  const parts = schedule.trim().split(/\s+/);
  if (parts.length !== 5)
    return `it has ${parts.length} fields; a cron schedule has 5 (minute hour day-of-month month day-of-week)`;
  for (let i = 0; i < fields.length; i++) {
    const error = fieldError(parts[i], fields[i]);
    if (error) return `the ${fields[i].name} field "${parts[i]}" ${error}`;
  }
  return undefined;
}

function fieldError(text: string, field: Field): string | undefined {
  for (const item of text.split(",")) {
    const [range, step, extra] = item.split("/");
    if (extra !== undefined) return "has more than one step";
    if (step !== undefined && !/^[1-9]\d*$/.test(step)) return "has a step that is not a positive number";
    if (range === "*") continue;
    const bounds = range.split("-");
    if (bounds.length > 2) return "has a malformed range";
    const values = bounds.map((b) => valueOf(b, field));
    if (values.some((v) => v === undefined)) {
      return `must use numbers ${field.min}-${field.max}${field.names ? " or names" : ""}, *, ranges, steps and lists`;
    }
    const [low, high = low] = values as number[];
    if (low < field.min || high > field.max) return `is outside ${field.min}-${field.max}`;
    if (low > high) return "has a range that runs backwards";
  }
  return undefined;
}

function valueOf(text: string, field: Field): number | undefined {
  if (/^\d+$/.test(text)) return Number(text);
  const index = field.names?.indexOf(text.toLowerCase()) ?? -1;
  if (index < 0) return undefined;
  return field.min + index;
}
