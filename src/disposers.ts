// One ordered teardown for everything a server acquires. Each resource pushes
// its disposer the moment it is acquired; every exit path (a failed start at
// any point, or close()) runs the same stack in reverse, so what was opened
// last is closed first and nothing is closed that was never opened. A disposer
// that throws is reported and the rest still run: one stuck store must not
// leave the engine workers or the listener behind.

export type Disposer = () => void | Promise<void>;

export class DisposerStack {
  private readonly stack: { name: string; dispose: Disposer }[] = [];
  private disposing: Promise<void> | null = null;

  constructor(private readonly onError: (name: string, err: unknown) => void) {}

  /** Registers the teardown of a resource just acquired. Refused once disposal has begun. */
  push(name: string, dispose: Disposer): void {
    if (this.disposing) throw new Error(`cannot acquire ${name}: the server is being torn down`);
    this.stack.push({ name, dispose });
  }

  /** The registered names, first acquired first (for tests and logs). */
  get names(): string[] {
    return this.stack.map((d) => d.name);
  }

  /** Runs every disposer, last pushed first, one at a time. Calling it again returns the same promise. */
  disposeAll(): Promise<void> {
    this.disposing ??= (async () => {
      for (let entry = this.stack.pop(); entry; entry = this.stack.pop()) {
        try {
          await entry.dispose();
        } catch (err) {
          this.onError(entry.name, err);
        }
      }
    })();
    return this.disposing;
  }
}
