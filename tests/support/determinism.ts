/**
 * Renders the same input again at another wall-clock time and with another random source: a
 * renderer whose output feeds a command line or a trigger must give the same bytes, or every
 * `pulumi up` would re-run (or replace) what depends on it.
 */
export function renderedElsewhen<T>(render: () => T): T {
  jest.useFakeTimers({ now: new Date("2031-07-04T03:21:00Z") });
  const random = jest.spyOn(Math, "random").mockReturnValue(0.123456789);
  try {
    return render();
  } finally {
    random.mockRestore();
    jest.useRealTimers();
  }
}
