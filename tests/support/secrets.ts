/** Expects that no secret appears in a run's stdout or stderr. */
export function expectNoSecrets(result: { stdout: string; stderr: string }, secrets: readonly string[]): void {
  for (const secret of secrets) {
    expect(result.stdout).not.toContain(secret);
    expect(result.stderr).not.toContain(secret);
  }
}
