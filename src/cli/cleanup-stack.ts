// Start and stop as one list: each thing that is started pushes how to stop it, and stopping
// runs those steps in reverse order. A failure half-way through a start unwinds exactly what
// was started by then; a step that fails does not keep the ones after it from running.

export interface CleanupFailure {
  step: string;
  error: unknown;
}

export class CleanupStack {
  private readonly steps: Array<{ name: string; run: () => unknown }> = [];

  /** Registers how to undo what was just started; named for the log when it fails. */
  push(name: string, run: () => unknown): void {
    this.steps.push({ name, run });
  }

  get size(): number {
    return this.steps.length;
  }

  /** Runs every step, last pushed first, and empties the stack. Returns the steps that failed. */
  async unwind(): Promise<CleanupFailure[]> {
    const failures: CleanupFailure[] = [];
    for (let step = this.steps.pop(); step !== undefined; step = this.steps.pop()) {
      try {
        await step.run();
      } catch (error) {
        failures.push({ step: step.name, error });
      }
    }
    return failures;
  }
}
