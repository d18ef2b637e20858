// A JSON Schema `pattern` (an ECMAScript regular expression) → the GBNF of
// the JSON string body it allows, for the subset a grammar can carry exactly:
// literals, escapes (\d \w \s and their negations), `.`, classes, groups,
// alternation, and the quantifiers ? * + {n} {n,} {n,m}. Lookarounds,
// backreferences and word boundaries cannot be written as a grammar: refused.
//
// The grammar writes the string as JSON, so characters JSON must escape are
// written escaped (a `"` as \" ...), and classes that would admit control
// characters are narrowed to exclude them: every string written still
// matches, some that match are never written. A pattern is a search unless
// anchored: without ^ (or $) any characters may come before (or after) it.

/** Characters written by `.` and negated classes: anything but what JSON must escape. */
const PLAIN = '[^"\\\\\\x00-\\x1F\\x7F]';
const DIGIT = "[0-9]";
const WORD = "[a-zA-Z0-9_]";
const SPACE = '" "';

export class PatternError extends Error {}

/** Whole-pattern GBNF (inside the quotes) and the repetition units it costs. */
export function patternGbnf(pattern: string): { gbnf: string; repetitions: number } {
  const p = new Parser(pattern);
  return p.whole();
}

class Parser {
  private i = 0;
  repetitions = 0;

  constructor(private readonly src: string) {}

  whole(): { gbnf: string; repetitions: number } {
    const anchoredStart = this.src.startsWith("^");
    if (anchoredStart) this.i = 1;
    let end = this.src.length;
    const anchoredEnd = this.src.endsWith("$") && !this.src.endsWith("\\$");
    if (anchoredEnd) end--;
    const body = this.alternation(end);
    if (this.i !== end) throw new PatternError(`unexpected '${this.src[this.i]}' at ${this.i}`);
    const parts = [anchoredStart ? "" : `${PLAIN}*`, `(${body})`, anchoredEnd ? "" : `${PLAIN}*`].filter((s) => s !== "");
    return { gbnf: parts.join(" "), repetitions: this.repetitions };
  }

  private alternation(end: number): string {
    const branches = [this.sequence(end)];
    while (this.i < end && this.src[this.i] === "|") {
      this.i++;
      branches.push(this.sequence(end));
    }
    return branches.join(" | ");
  }

  private sequence(end: number): string {
    const items: string[] = [];
    while (this.i < end && this.src[this.i] !== "|" && this.src[this.i] !== ")") {
      const atom = this.atom(end);
      items.push(this.quantified(atom, end));
    }
    return items.length === 0 ? '""' : items.join(" ");
  }

  private quantified(atom: string, end: number): string {
    const c = this.src[this.i];
    let out = atom;
    if (c === "?" || c === "*" || c === "+") {
      this.i++;
      out = `(${atom})${c}`;
    } else if (c === "{") {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(this.src.slice(this.i, end));
      if (!m) return atom; // not a quantifier: the brace is a literal, read as the next atom
      this.i += m[0].length;
      const min = Number(m[1]);
      const max = m[2] === undefined ? min : m[3] === "" ? undefined : Number(m[3]);
      if (max !== undefined && max < min) throw new PatternError(`{${min},${max}} is out of order`);
      this.repetitions += max ?? min;
      out = `(${atom})${max === undefined ? `{${min},}` : min === max ? `{${min}}` : `{${min},${max}}`}`;
    } else return atom;
    if (this.src[this.i] === "?") this.i++; // lazy: the same strings
    return out;
  }

  private atom(end: number): string {
    const c = this.src[this.i]!;
    if (c === "(") {
      this.i++;
      if (this.src.startsWith("?:", this.i)) this.i += 2;
      else if (this.src.startsWith("?<", this.i) && !/^\?<[=!]/.test(this.src.slice(this.i))) {
        const close = this.src.indexOf(">", this.i);
        if (close < 0) throw new PatternError("unterminated group name");
        this.i = close + 1;
      } else if (this.src[this.i] === "?") throw new PatternError("lookarounds cannot be enforced by a grammar");
      const inner = this.alternation(end);
      if (this.src[this.i] !== ")") throw new PatternError("unbalanced parenthesis");
      this.i++;
      return `(${inner})`;
    }
    if (c === "[") return this.charClass(end);
    if (c === ".") {
      this.i++;
      return PLAIN;
    }
    if (c === "^" || c === "$") throw new PatternError(`'${c}' is only supported at the start or end of the whole pattern`);
    if (c === "*" || c === "+" || c === "?" || c === ")") throw new PatternError(`unexpected '${c}'`);
    if (c === "\\") return this.escape(false).gbnf;
    this.i++;
    return literal(c);
  }

  /** An escape at this.i (a backslash); inside a class, returns its members as class text when it has one. */
  private escape(inClass: boolean): { gbnf: string; classText?: string; char?: string } {
    const e = this.src[this.i + 1];
    if (e === undefined) throw new PatternError("a trailing backslash");
    this.i += 2;
    switch (e) {
      case "d":
        return { gbnf: DIGIT, classText: "0-9" };
      case "w":
        return { gbnf: WORD, classText: "a-zA-Z0-9_" };
      case "s":
        return { gbnf: SPACE, classText: " " };
      case "D":
        return { gbnf: '[^0-9"\\\\\\x00-\\x1F\\x7F]' };
      case "W":
        return { gbnf: '[^a-zA-Z0-9_"\\\\\\x00-\\x1F\\x7F]' };
      case "S":
        return { gbnf: '[^ "\\\\\\x00-\\x1F\\x7F]' };
      case "b":
      case "B":
        if (inClass) throw new PatternError("\\b inside a class is not supported");
        throw new PatternError("word boundaries cannot be enforced by a grammar");
      case "n":
      case "r":
      case "t":
      case "f":
      case "v":
      case "0":
        throw new PatternError(`'\\${e}' (a control character) is not supported`);
      case "u":
      case "x":
      case "p":
      case "P":
      case "c":
      case "k":
        throw new PatternError(`'\\${e}' escapes are not supported`);
      default:
        if (/[1-9]/.test(e)) throw new PatternError("backreferences cannot be enforced by a grammar");
        if (/[A-Za-z]/.test(e)) throw new PatternError(`'\\${e}' is not supported`);
        return { gbnf: literal(e), char: e };
    }
  }

  private charClass(end: number): string {
    this.i++;
    const negated = this.src[this.i] === "^";
    if (negated) this.i++;
    let members = "";
    const extra: string[] = []; // `"` and `\`, written escaped, outside the class
    let first = true;
    while (this.i < end && (this.src[this.i] !== "]" || first)) {
      first = false;
      let lo: string;
      if (this.src[this.i] === "\\") {
        const esc = this.escape(true);
        if (esc.classText !== undefined) {
          members += esc.classText;
          continue;
        }
        if (esc.char === undefined) throw new PatternError("\\D, \\W and \\S inside a class are not supported");
        lo = esc.char;
      } else {
        lo = this.src[this.i]!;
        this.i++;
      }
      if (this.src[this.i] === "-" && this.src[this.i + 1] !== "]" && this.i + 1 < end) {
        this.i++;
        let hi: string;
        if (this.src[this.i] === "\\") {
          const esc = this.escape(true);
          if (esc.char === undefined) throw new PatternError("a class range must end in a character");
          hi = esc.char;
        } else {
          hi = this.src[this.i]!;
          this.i++;
        }
        if (hi < lo) throw new PatternError(`the class range ${lo}-${hi} is out of order`);
        if (rangeHasSpecial(lo, hi)) throw new PatternError("class ranges spanning quotes, backslashes or control characters are not supported");
        members += `${classChar(lo)}-${classChar(hi)}`;
      } else if (lo === '"' || lo === "\\") {
        extra.push(literal(lo));
      } else if (lo.charCodeAt(0) < 0x20 || lo === "\x7f") {
        // never written: JSON would need an escape
      } else members += classChar(lo);
    }
    if (this.src[this.i] !== "]") throw new PatternError("unterminated character class");
    this.i++;
    if (negated) {
      return `[^${members}"\\\\\\x00-\\x1F\\x7F]`;
    }
    const alts = [...(members ? [`[${members}]`] : []), ...extra];
    if (alts.length === 0) throw new PatternError("an empty character class matches nothing");
    return alts.length === 1 ? alts[0]! : `(${alts.join(" | ")})`;
  }
}

/** A pattern character as GBNF, written the way JSON writes it inside a string. */
function literal(c: string): string {
  if (c === '"') return '"\\\\\\""';
  if (c === "\\") return '"\\\\\\\\"';
  if (c.charCodeAt(0) < 0x20 || c === "\x7f") throw new PatternError("control characters are not supported");
  return `"${c}"`;
}

/** A character inside a GBNF class. */
function classChar(c: string): string {
  return c === "]" || c === "[" || c === "^" || c === "-" ? `\\${c}` : c;
}

function rangeHasSpecial(lo: string, hi: string): boolean {
  const a = lo.codePointAt(0)!;
  const b = hi.codePointAt(0)!;
  return [0x22, 0x5c, 0x7f].some((x) => x >= a && x <= b) || a < 0x20;
}
