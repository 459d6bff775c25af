// What doctor reports: one finding per line, each saying what it saw and what to do about it.
export type Level = 'ok' | 'warn' | 'fail';

export interface Finding {
  /** A stable name for machines, e.g. "containerd.annotations". */
  check: string;
  level: Level;
  /** What the line is about, as printed before the colon: "/dev/fuse", "containerd". */
  subject: string;
  message: string;
}

export function finding(check: string, subject: string, level: Level, message: string): Finding {
  return { check, subject, level, message };
}

const LABEL: Record<Level, string> = { ok: 'ok', warn: 'warn', fail: 'FAIL' };

/** `ok    /dev/fuse: character device 10:229, openable` */
export function formatFinding(f: Finding): string {
  return `${LABEL[f.level].padEnd(6)}${f.subject}: ${f.message}`;
}

/** 1 when anything failed; warnings alone do not fail. */
export function exitCode(findings: readonly Finding[]): number {
  return findings.some((f) => f.level === 'fail') ? 1 : 0;
}

/** A mode as ls and chmod write it: 0755. */
export function octal(mode: number): string {
  return `0${(mode & 0o7777).toString(8).padStart(3, '0')}`;
}
