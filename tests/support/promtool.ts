/** promtool unit-test files: the (alert, severity) pairs they prove firing and silent. */
import { parse } from "yaml";

interface ExpectedAlert {
  exp_labels?: Record<string, string>;
}

interface AlertRuleTest {
  eval_time: string;
  alertname: string;
  exp_alerts?: ExpectedAlert[];
}

export interface PromtoolTestFile {
  rule_files: string[];
  evaluation_interval?: string;
  tests: { name: string; interval?: string; alert_rule_test?: AlertRuleTest[] }[];
}

/** One evaluation of one alert in a test file: the severities it expects firing (none = silent). */
export interface AlertCase {
  file: string;
  test: string;
  alertname: string;
  evalTime: string;
  firingSeverities: string[];
}

export function parseTestFile(text: string): PromtoolTestFile {
  return parse(text) as PromtoolTestFile;
}

export function alertCases(file: string, parsed: PromtoolTestFile): AlertCase[] {
  return parsed.tests.flatMap((t) =>
    (t.alert_rule_test ?? []).map((c) => ({
      file,
      test: t.name,
      alertname: c.alertname,
      evalTime: c.eval_time,
      firingSeverities: (c.exp_alerts ?? []).map((a) => a.exp_labels?.severity ?? "(none)"),
    })),
  );
}

/**
 * For an (alert, severity) pair: a firing case expects that alert with that severity; a silent
 * case evaluates the alert and expects no alert of that severity (none at all, or only the
 * other severity of a same-named pair).
 */
export function coverage(cases: AlertCase[], alert: string, severity: string): { firing: number; silent: number } {
  const own = cases.filter((c) => c.alertname === alert);
  return {
    firing: own.filter((c) => c.firingSeverities.includes(severity)).length,
    silent: own.filter((c) => !c.firingSeverities.includes(severity)).length,
  };
}
