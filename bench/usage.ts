// A bad command line: reported as one line and exit code 2 by benchMain.
export class UsageError extends Error {}
