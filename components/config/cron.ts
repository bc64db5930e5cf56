/**
 * Validation of 5-field cron schedules as Kubernetes CronJobs read them
 * (minute hour day-of-month month day-of-week), and the longest gap between two runs.
 *
 * Hand-written on purpose: a general cron library reads another dialect. cron-parser 5.10.7
 * (the maintained npm parser, checked against its dist/ sources) accepts what Kubernetes'
 * robfig/cron ParseStandard refuses (a seconds field, `L`, `#`, and a 4-field schedule,
 * which it runs every minute), and it decides the day-of-month/day-of-week OR by the raw text
 * being `*` or `?`, so `0 0 31 2 *\/1` fires daily in February there while Kubernetes (whose
 * star bit survives a step of 1) never runs it. Its iterator also cannot find the longest gap:
 * the exact answer needs the 400-year calendar cycle (`0 0 29 2 *` gaps 8 years), 14 million
 * runs of `*\/15 * * * *`, at about 25 us per `next()`. tests/cron.test.ts pins the dialect.
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

const monthNames = [
  "January",
  "February",
  "March",
  "April",
  "May",
  "June",
  "July",
  "August",
  "September",
  "October",
  "November",
  "December",
];

/**
 * Why a valid 5-field schedule never fires, or undefined when some calendar day matches it.
 * Read as Kubernetes' CronJob controller reads it (robfig/cron's `dayMatches`): when day-of-week
 * is a bare star (step 1 included), a day must match day-of-month; when both are restricted a day
 * matches either (Vixie cron's OR), and every month has every weekday, so it fires; when only
 * day-of-week is restricted, likewise. So only a day-of-month that no selected month has
 * (`0 0 30 2 *`, `0 0 31 4,6,9,11 *`) never fires. February counts with 29 days: `0 0 29 2 *`
 * fires in leap years.
 */
export function cronNeverFiresError(schedule: string): string | undefined {
  if (cronError(schedule)) return undefined;
  const [, , dom, months, dow] = parseFields(schedule);
  if (!dow.star) return undefined;
  const selectedMonths = [...months.values].sort((a, b) => a - b);
  if (selectedMonths.some((m) => [...dom.values].some((d) => d <= monthLength(m, true)))) return undefined;
  const days = [...dom.values].sort((a, b) => a - b).join(" or ");
  const lengths = selectedMonths.map((m) => `${monthNames[m - 1]} ${monthLength(m, true)}`).join(", ");
  return `never fires: no month it selects has day ${days} (days per month: ${lengths}); with day-of-week * a run needs that day of month`;
}

/** Minutes in a day, and days in the Gregorian calendar's 400-year cycle (a whole number of weeks). */
const minutesPerDay = 1440;
const daysPer400Years = 146097;

/**
 * The longest gap, in seconds, between two consecutive runs of a valid 5-field schedule, read
 * as Kubernetes' CronJob controller reads it (robfig/cron's standard parser, in UTC): when both
 * day-of-month and day-of-week are restricted a day matches either (Vixie cron's OR); when one
 * of them is `*` both must match (`*` with a step above 1 counts as restricted, as there).
 *
 * Exact rather than sampled: the matching times of day are the same every matching day, and
 * the calendar repeats every 400 years, so one pass over 146,097 days (7 when only the weekday
 * matters) finds every gap, the 8-year gaps of `0 0 29 2 *` included. Throws on an invalid schedule and on one that never
 * fires (`0 0 30 2 *`, {@link cronNeverFiresError}): an alert threshold cannot be derived from either.
 */
export function cronMaxIntervalSeconds(schedule: string): number {
  const error = cronError(schedule);
  if (error) throw new Error(`"${schedule}" is not a valid cron schedule: ${error}`);
  const never = cronNeverFiresError(schedule);
  if (never) throw new Error(`"${schedule}" ${never}`);
  const [minuteField, hourField, dom, months, dow] = parseFields(schedule);
  const minutes = [...minuteField.values];
  const hours = [...hourField.values];
  const times = hours.flatMap((h) => minutes.map((m) => h * 60 + m)).sort((a, b) => a - b);
  const monthMatch = flags(months.values, 12);
  const domMatch = flags(dom.values, 31);
  const dowMatch = flags(dow.values, 6);
  const domAndDow = dom.star || dow.star;

  let longest = 0;
  for (let i = 1; i < times.length; i++) longest = Math.max(longest, times[i] - times[i - 1]);
  const dayGap = minutesPerDay + times[0] - times[times.length - 1];

  // When every day of every month qualifies by date, only the weekday decides: the days repeat
  // weekly. Otherwise walk 2000-01-01 (a Saturday, the start of a 400-year cycle) to 2399-12-31.
  const cycle = dom.star && months.values.size === 12 ? 7 : daysPer400Years;
  let firstDay = -1;
  let lastDay = -1;
  let day = 0;
  for (let year = 2000; day < cycle; year++) {
    const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
    for (let month = 1; month <= 12 && day < cycle; month++) {
      const length = monthLength(month, leap);
      if (!monthMatch[month]) {
        day += length;
        continue;
      }
      for (let date = 1; date <= length && day < cycle; date++, day++) {
        const byDate = domMatch[date];
        const byWeekday = dowMatch[(day + 6) % 7]; // day 0 is a Saturday; 0 = Sunday
        if (!(domAndDow ? byDate && byWeekday : byDate || byWeekday)) continue;
        if (lastDay >= 0) longest = Math.max(longest, (day - lastDay - 1) * minutesPerDay + dayGap);
        if (firstDay < 0) firstDay = day;
        lastDay = day;
      }
    }
  }
  // Unreachable after cronNeverFiresError; kept so a gap in that rule cannot become a bogus 0.
  if (firstDay < 0) throw new Error(`"${schedule}" never fires: no calendar day matches it`);
  // The gap from the cycle's last run to the next cycle's first.
  longest = Math.max(longest, (firstDay + cycle - lastDay - 1) * minutesPerDay + dayGap);
  return longest * 60;
}

function monthLength(month: number, leap: boolean): number {
  if (month === 2) return leap ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

/** `values` as a lookup table indexed 0..max. */
function flags(values: Set<number>, max: number): boolean[] {
  return Array.from({ length: max + 1 }, (_, i) => values.has(i));
}

/** The five fields of a valid schedule, expanded. */
function parseFields(schedule: string): { values: Set<number>; star: boolean }[] {
  return schedule
    .trim()
    .split(/\s+/)
    .map((text, i) => expand(text, fields[i]));
}

/** The values a field selects; `star` when it is a bare `*` (robfig/cron's star bit). */
function expand(text: string, field: Field): { values: Set<number>; star: boolean } {
  const values = new Set<number>();
  let star = false;
  for (const item of text.split(",")) {
    const [range, stepText] = item.split("/");
    const step = stepText === undefined ? 1 : Number(stepText);
    // Day of week 7 is Sunday, so `*` and `N/step` end at 6, as in robfig/cron.
    const max = field.name === "day of week" ? 6 : field.max;
    let low = field.min;
    let high = max;
    if (range === "*") {
      if (step === 1) star = true;
    } else {
      const bounds = range.split("-").map((b) => valueOf(b, field) as number);
      low = bounds[0];
      // "N/step" means N to the field's maximum, as in robfig/cron.
      high = bounds.length > 1 ? bounds[1] : stepText === undefined ? low : max;
    }
    for (let v = low; v <= high; v += step) values.add(field.name === "day of week" && v === 7 ? 0 : v);
  }
  return { values, star };
}

/**
 * The rule of every schedule setting (backup and defragmentation jobs): a valid 5-field
 * schedule that fires. A CronJob whose schedule never fires is accepted by the API server and
 * silently never runs.
 */
export function cronSettingError(schedule: string): string | undefined {
  const err = cronError(schedule);
  return err ? `is not a valid 5-field cron schedule: ${err}` : cronNeverFiresError(schedule);
}
