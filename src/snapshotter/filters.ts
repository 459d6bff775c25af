// containerd's filter syntax for List, the subset snapshotters see:
//   labels."k"==v   labels.k   kind==active   name==x   parent==x   parent!=""   name~=regex
// A comma joins selectors with AND; several filter strings are joined with OR.
import { setFlagsFromString } from 'node:v8';
import { InvalidArgument, Unimplemented, quote } from '../errors.js';
import type { Info } from './types.js';

// containerd matches `~=` with Go's regexp, which runs in linear time. V8's default engine
// backtracks: `name~=(a+)+$` against a name of forty a's and a "!" blocks the daemon's event
// loop for hours. V8's linear-time engine (the `l` flag) gives Go's guarantee. It refuses more
// than Go does: backreferences and lookaround (as Go), and counted repetition of more than 16
// in all (`a{17}`, `(x{4}){5}`), which Go allows; those filters are InvalidArgument. The flag
// is read when a pattern is compiled.
setFlagsFromString('--enable-experimental-regexp-engine');

function linearRegExp(source: string): RegExp {
  try {
    return new RegExp(source, 'l');
  } catch (err) {
    if (err instanceof SyntaxError && /Invalid (regular expression )?flags/i.test(err.message)) {
      throw new Unimplemented('"~=" filters need V8\'s linear-time regular expression engine, which this Node.js does not offer');
    }
    throw err;
  }
}

type Operator = '==' | '!=' | '~=';

export interface Selector {
  fieldpath: string[];
  /** Absent: the selector only asks whether the field is present. */
  op?: Operator;
  value?: string;
  regex?: RegExp;
}

/** One filter string: its selectors must all match. */
export type Filter = Selector[];

class Scanner {
  pos = 0;
  constructor(readonly src: string) {}
  get done(): boolean { return this.pos >= this.src.length; }
  peek(n = 1): string { return this.src.slice(this.pos, this.pos + n); }
  skipSpace(): void { while (!this.done && /\s/.test(this.src[this.pos] as string)) this.pos++; }
  fail(what: string): never {
    throw new InvalidArgument(`invalid filter ${quote(this.src)} at offset ${this.pos}: ${what}`);
  }
}

function scanQuoted(s: Scanner): string {
  const quote = s.peek();
  const start = s.pos;
  s.pos++;
  let out = '';
  while (!s.done) {
    const c = s.src[s.pos++] as string;
    if (c === quote) return out;
    if (c === '\\' && quote !== '`') {
      const e = s.src[s.pos++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case '\\': case '"': case "'": case '/': out += e; break;
        default: s.pos = start; s.fail(`unknown escape \\${e ?? ''} in quoted string`);
      }
      continue;
    }
    out += c;
  }
  s.pos = start;
  return s.fail('unterminated quoted string');
}

function scanField(s: Scanner): string {
  const c = s.peek();
  if (c === '"' || c === '`') return scanQuoted(s);
  const m = /^[A-Za-z0-9_\-/:@]+/.exec(s.src.slice(s.pos));
  if (!m) s.fail('expected a field name');
  s.pos += m[0].length;
  return m[0];
}

function scanValue(s: Scanner): string {
  const c = s.peek();
  if (c === '"' || c === '`') return scanQuoted(s);
  // A bare value runs to the next comma: digests (sha256:...) and keys with '/' are common.
  const end = s.src.indexOf(',', s.pos);
  const raw = s.src.slice(s.pos, end === -1 ? undefined : end);
  s.pos += raw.length;
  const v = raw.trim();
  if (v === '') s.fail('expected a value after the operator');
  return v;
}

function parseSelector(s: Scanner): Selector {
  s.skipSpace();
  const fieldpath = [scanField(s)];
  while (s.peek() === '.') {
    s.pos++;
    fieldpath.push(scanField(s));
  }
  s.skipSpace();
  const op = s.peek(2);
  if (op === '==' || op === '!=' || op === '~=') {
    s.pos += 2;
    s.skipSpace();
    const value = scanValue(s);
    if (op === '~=') {
      try {
        return { fieldpath, op, value, regex: linearRegExp(value) };
      } catch (e) {
        if (!(e instanceof SyntaxError)) throw e;
        const why = /linear time/.test(e.message)
          ? 'it cannot be matched in linear time (backreferences, lookaround and counted repetition over 16 are not supported)'
          // V8 repeats the whole pattern in its message; it is quoted (and cut) already.
          : e.message.replace(/^Invalid regular expression: \/.*\/\w*: /s, '');
        s.fail(`bad regular expression ${quote(value)}: ${why}`);
      }
    }
    return { fieldpath, op, value };
  }
  return { fieldpath };
}

export function parseFilter(src: string): Filter {
  const s = new Scanner(src);
  const selectors: Selector[] = [];
  for (;;) {
    selectors.push(parseSelector(s));
    s.skipSpace();
    if (s.done) return selectors;
    if (s.peek() !== ',') s.fail(`expected "," or the end, found ${JSON.stringify(s.peek())}`);
    s.pos++;
  }
}

/** The value of a field of a snapshot, or undefined when the field is absent. */
function field(info: Info, path: string[]): string | undefined {
  switch (path[0]) {
    case 'kind': return path.length === 1 ? info.kind : undefined;
    case 'name': return path.length === 1 ? info.name : undefined;
    case 'parent': return path.length === 1 ? info.parent : undefined;
    case 'labels': {
      if (path.length < 2) return undefined;
      const key = path.slice(1).join('.');
      return Object.hasOwn(info.labels, key) ? info.labels[key] : undefined;
    }
    default: return undefined;
  }
}

function matchSelector(info: Info, sel: Selector): boolean {
  const v = field(info, sel.fieldpath);
  if (v === undefined) return false;
  switch (sel.op) {
    case undefined: return true;
    case '==': return v === sel.value;
    case '!=': return v !== sel.value;
    case '~=': return (sel.regex as RegExp).test(v);
  }
}

/** Parses filter strings once; the returned predicate is true when any filter matches. */
export function compileFilters(filters: readonly string[]): (info: Info) => boolean {
  const parsed = filters.filter((f) => f.trim() !== '').map(parseFilter);
  if (parsed.length === 0) return () => true;
  return (info) => parsed.some((f) => f.every((sel) => matchSelector(info, sel)));
}
