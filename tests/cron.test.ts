/**
 * cronMaxIntervalSeconds: the longest gap between two runs of a CronJob schedule, which sets
 * the etcd backup freshness alert's threshold. Each expectation is worked out by hand from
 * the calendar, not from the implementation.
 */
import { cronError, cronMaxIntervalSeconds, cronNeverFiresError } from "../components/config/cron";

const minute = 60;
const hour = 3600;
const day = 86400;

test.each([
  ["0 */6 * * *", 6 * hour],
  ["30 2 * * *", day],
  ["0 3 * * 1", 7 * day],
  ["*/15 * * * *", 15 * minute],
  ["* * * * *", minute],
  ["*/1 * * * *", minute],
  // Runs at :00 and :45: the long gap is :00 -> :45.
  ["0,45 * * * *", 45 * minute],
  // 23:00 then 01:00 the next day is 2h; 01:00 -> 23:00 is 22h.
  ["0 1,23 * * *", 22 * hour],
  // "N/step" runs from N to the field's maximum: 5, 25, 45 past each hour -> 20m, and 45 -> 05 is 20m.
  ["5/20 * * * *", 20 * minute],
  // Weekdays at 02:00: Friday -> Monday is 3 days.
  ["0 2 * * mon-fri", 3 * day],
  ["0 2 * * 1-5", 3 * day],
  // 7 and 0 are both Sunday.
  ["0 0 * * 7", 7 * day],
  ["0 0 * * 0,7", 7 * day],
  // Monthly on the 1st: the longest gap is a 31-day month.
  ["0 0 1 * *", 31 * day],
  // The 31st exists in 7 months; Aug 31 is the last before Oct 31 (61 days)... and Dec 31 -> Jan 31 is 31 days,
  // Jan 31 -> Mar 31 is 59 or 60 days; May 31 -> Jul 31 is 61 days.
  ["0 0 31 * *", 61 * day],
  // Yearly on January 1st: 365 or 366 days.
  ["0 0 1 1 *", 366 * day],
  // Leap days only (day-of-week is `*`, so both must match): 2096-02-29 -> 2104-02-29 is 8 years, two leap days.
  ["0 0 29 2 *", (8 * 365 + 1) * day],
  // Day-of-month 1 OR Sunday (both restricted: Vixie cron's OR). Never more than 7 days apart.
  ["0 0 1 * 0", 7 * day],
  // `*/2` in day-of-week counts as restricted (robfig/cron clears the star bit for a step), so OR applies:
  // every day of month 1 OR an even weekday; day of month 1 is the only day-of-month match.
  ["0 0 1 * */2", 2 * day],
  // Day-of-month 31 OR Monday in February (both restricted): every Monday in February. The longest
  // gap: a non-leap year whose Feb 22 is a Monday (the last one) to Feb 7 of the next year (its
  // Feb 22 is a Tuesday, so Feb 7 is a Monday and Feb 1 a Tuesday): 365 - 15 days.
  ["0 0 31 2 1", 350 * day],
  // Day-of-month `*` with a day-of-week list: AND, so only Mondays and Thursdays: Thu -> Mon is 4 days.
  ["0 12 * * 1,4", 4 * day],
])("%s -> %d s", (schedule, expected) => {
  expect(cronMaxIntervalSeconds(schedule)).toBe(expected);
});

test("common schedules take well under 50 ms", () => {
  for (const schedule of ["0 */6 * * *", "30 2 * * *", "0 3 * * 1", "*/15 * * * *", "0 0 29 2 *"]) {
    const start = process.hrtime.bigint();
    cronMaxIntervalSeconds(schedule);
    expect(Number(process.hrtime.bigint() - start) / 1e6).toBeLessThan(50);
  }
});

test("an invalid schedule is refused with cronError's reason", () => {
  expect(() => cronMaxIntervalSeconds("0 */6 * *")).toThrow(
    '"0 */6 * *" is not a valid cron schedule: it has 4 fields; a cron schedule has 5',
  );
  expect(() => cronMaxIntervalSeconds("61 * * * *")).toThrow('the minute field "61" is outside 0-59');
});

test("a schedule that never fires is refused, since no threshold follows from it", () => {
  expect(() => cronMaxIntervalSeconds("0 0 30 2 *")).toThrow(
    '"0 0 30 2 *" never fires: no month it selects has day 30 (days per month: February 29)',
  );
  expect(() => cronMaxIntervalSeconds("0 0 31 2 *")).toThrow('"0 0 31 2 *" never fires');
});

describe("cronNeverFiresError", () => {
  test.each([
    ["0 0 30 2 *", "day 30 (days per month: February 29)"],
    ["0 0 31 2 *", "day 31 (days per month: February 29)"],
    ["0 0 30,31 feb *", "day 30 or 31 (days per month: February 29)"],
    ["0 0 31 4 *", "day 31 (days per month: April 30)"],
    ["0 0 31 jun *", "day 31 (days per month: June 30)"],
    ["0 0 31 9 *", "day 31 (days per month: September 30)"],
    ["0 0 31 4,6,9,11 *", "day 31 (days per month: April 30, June 30, September 30, November 30)"],
    ["0 0 31 2,4 *", "day 31 (days per month: February 29, April 30)"],
    // `*/1` keeps robfig/cron's star bit (only a step above 1 clears it): still AND.
    ["0 0 31 2 */1", "day 31 (days per month: February 29)"],
  ])("%s never fires", (schedule, what) => {
    expect(cronNeverFiresError(schedule)).toBe(
      `never fires: no month it selects has ${what}; with day-of-week * a run needs that day of month`,
    );
  });

  test.each([
    // Both day fields restricted: a day matches either (Vixie cron's OR), and February has Mondays.
    "0 0 31 2 1",
    "0 0 30 2 mon-fri",
    // `*/2` clears robfig/cron's star bit, so OR applies.
    "0 0 31 2 */2",
    // Leap days exist.
    "0 0 29 2 *",
    // One selected month has the day.
    "0 0 31 2,3 *",
    "0 0 31 * *",
    "0 0 30 2/1 *",
    "0 */6 * * *",
    // Invalid schedules are cronError's to report.
    "0 0 32 2 *",
  ])("%s is not reported as never firing", (schedule) => {
    expect(cronNeverFiresError(schedule)).toBeUndefined();
  });
});

describe("the Kubernetes dialect, not a general cron library's", () => {
  // Kubernetes parses CronJob schedules with robfig/cron's ParseStandard: exactly 5 fields and
  // no L, W or # (cron-parser 5.x accepts all of these, and reads a 4-field schedule too).
  test.each([
    ["0 0 0 1 * *", "it has 6 fields"],
    ["0 */6 * *", "it has 4 fields"],
    ["0 0 L * *", 'the day of month field "L" must use numbers'],
    ["0 0 * * 1#2", 'the day of week field "1#2" must use numbers'],
  ])("%s is refused", (schedule, reason) => {
    expect(cronError(schedule)).toContain(reason);
  });
});
