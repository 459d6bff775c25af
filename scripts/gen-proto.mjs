#!/usr/bin/env node
// Generates src/server/generated/*.ts from the .proto files in proto/: a TypeScript type for
// every message, enum and service method, and the field tables that src/server/codec.ts encodes
// and decodes with. The .proto files are parsed here, at development time (by @grpc/proto-loader),
// so that no process parses them at start: loading protobufjs and proto-loader cost ~70 ms of
// every `cvmfs-snapshotter pull` and some MiB of the daemon.
//
// Usage: node scripts/gen-proto.mjs          rewrites the generated files
//        node scripts/gen-proto.mjs --check  exits 1 when they differ from what proto/ gives
// test/unit/proto-generated.test.ts runs the check in `npm test`.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { createRequire } from 'node:module';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PROTO = join(ROOT, 'proto');
const OUT = join(ROOT, 'src', 'server', 'generated');

/** One generated file per group of .proto files; each is imported only by what needs it. */
export const OUTPUTS = [
  { file: 'snapshots.ts', protos: ['containerd/snapshots.proto'], includeDirs: [join(PROTO, 'containerd'), PROTO], what: 'containerd\'s Snapshots service (v1), Mount and the well-known types they use' },
  { file: 'cri.ts', protos: ['cri/api.proto'], includeDirs: [PROTO], what: 'the subset of the CRI (runtime.v1) that `cvmfs-snapshotter pull` speaks' },
];

const SCALARS = {
  TYPE_STRING: ['string', 'string'], TYPE_BYTES: ['bytes', 'Buffer'], TYPE_BOOL: ['bool', 'boolean'],
  TYPE_INT32: ['int32', 'number'], TYPE_UINT32: ['uint32', 'number'], TYPE_SINT32: ['sint32', 'number'],
  TYPE_FIXED32: ['fixed32', 'number'], TYPE_SFIXED32: ['sfixed32', 'number'],
  // 64-bit integers are numbers, as proto-loader's longs: Number gave them (exact below 2^53).
  TYPE_INT64: ['int64', 'number'], TYPE_UINT64: ['uint64', 'number'], TYPE_SINT64: ['sint64', 'number'],
  TYPE_FIXED64: ['fixed64', 'number'], TYPE_SFIXED64: ['sfixed64', 'number'],
  TYPE_DOUBLE: ['double', 'number'], TYPE_FLOAT: ['float', 'number'],
};

function loadDefinitions(out) {
  const require = createRequire(import.meta.url);
  const { loadSync } = require('@grpc/proto-loader');
  return loadSync(out.protos, { keepCase: true, includeDirs: out.includeDirs });
}

/** Resolves a type name as protoc does: from the innermost scope outwards. */
function resolver(known) {
  return (scope, name) => {
    if (name.startsWith('.')) return name.slice(1);
    const parts = scope.split('.');
    for (let i = parts.length; i >= 0; i--) {
      const candidate = [...parts.slice(0, i), name].join('.');
      if (known.has(candidate)) return candidate;
    }
    throw new Error(`cannot resolve type ${name} in ${scope}`);
  };
}

/** Everything the definitions hold, flattened: messages (nested ones too) and enums by full name. */
function collect(defs) {
  const messages = new Map();
  const enums = new Map();
  const services = new Map();
  const addMessage = (full, type) => {
    messages.set(full, type);
    for (const n of type.nestedType ?? []) addMessage(`${full}.${n.name}`, n);
    for (const e of type.enumType ?? []) enums.set(`${full}.${e.name}`, e);
  };
  for (const [full, def] of Object.entries(defs)) {
    if (typeof def === 'object' && def !== null && 'format' in def) {
      if (def.format.includes('DescriptorProto') && !def.format.includes('Enum')) addMessage(full, def.type);
      else enums.set(full, def.type);
    } else {
      services.set(full, def);
    }
  }
  return { messages, enums, services };
}

const tsName = (full) => full.split('.').at(-1);

function fieldSpec(scope, f, ctx) {
  const repeated = f.label === 'LABEL_REPEATED';
  if (f.proto3Optional) throw new Error(`${scope}.${f.name}: proto3 optional is not supported by src/server/codec.ts`);
  if (SCALARS[f.type]) {
    const [kind, ts] = SCALARS[f.type];
    return { spec: `{ name: '${f.name}', number: ${f.number}, kind: '${kind}'${repeated ? ', repeated: true' : ''} }`, ts: repeated ? `${ts}[]` : ts };
  }
  const target = ctx.resolve(scope, f.typeName);
  if (f.type === 'TYPE_ENUM') {
    const ts = `${tsName(target)} | number`;
    return { spec: `{ name: '${f.name}', number: ${f.number}, kind: 'enum', type: '${target}'${repeated ? ', repeated: true' : ''} }`, ts: repeated ? `(${ts})[]` : ts };
  }
  if (f.type !== 'TYPE_MESSAGE') throw new Error(`${scope}.${f.name}: field type ${f.type} is not supported`);
  const entry = ctx.messages.get(target);
  if (entry?.options?.mapEntry) {
    const [k, v] = entry.field;
    if (!SCALARS[k.type] || SCALARS[k.type][1] !== 'string') throw new Error(`${scope}.${f.name}: only maps with string keys are supported`);
    const value = fieldSpec(target, v, ctx);
    const valueSpec = SCALARS[v.type] ? `kind: '${SCALARS[v.type][0]}'` : `kind: '${v.type === 'TYPE_ENUM' ? 'enum' : 'message'}', type: '${ctx.resolve(target, v.typeName)}'`;
    return { spec: `{ name: '${f.name}', number: ${f.number}, kind: 'map', map: { ${valueSpec} } }`, ts: `Record<string, ${value.ts}>` };
  }
  const ts = tsName(target);
  return {
    spec: `{ name: '${f.name}', number: ${f.number}, kind: 'message', type: '${target}'${repeated ? ', repeated: true' : ''} }`,
    ts: repeated ? `${ts}[]` : `${ts} | null`,
  };
}

export function generate(out) {
  const defs = loadDefinitions(out);
  const { messages, enums, services } = collect(defs);
  const known = new Set([...messages.keys(), ...enums.keys()]);
  const ctx = { messages, resolve: resolver(known) };
  const names = new Map();
  for (const full of known) {
    if (messages.get(full)?.options?.mapEntry) continue;
    const n = tsName(full);
    if (names.has(n)) throw new Error(`two types are named ${n} (${names.get(n)}, ${full}); the generator names types by their last part`);
    names.set(n, full);
  }

  const lines = [];
  const push = (s = '') => lines.push(s);
  push(`// Generated by scripts/gen-proto.mjs from ${out.protos.map((p) => `proto/${p}`).join(', ')}: ${out.what}.`);
  push('// Do not edit: change the .proto file and run `npm run gen:proto`; `npm test` fails while this file is stale.');
  push('// Decoded messages carry every field: scalars default to 0, \'\' or false, lists to [], maps to {},');
  push('// absent messages to null; enums are names (a number the .proto does not name stays a number).');
  push("import type { Schema } from '../codec.js';");
  push();
  for (const [full, e] of [...enums].sort(([a], [b]) => a.localeCompare(b))) {
    push(`/** ${full} */`);
    push(`export type ${tsName(full)} = ${e.value.map((v) => `'${v.name}'`).join(' | ')};`);
    push();
  }
  const specs = [];
  for (const [full, m] of [...messages].sort(([a], [b]) => a.localeCompare(b))) {
    if (m.options?.mapEntry) continue;
    if ((m.oneofDecl ?? []).length > 0) throw new Error(`${full}: oneof is not supported by src/server/codec.ts`);
    const fields = m.field.map((f) => ({ f, ...fieldSpec(full, f, ctx) }));
    push(`/** ${full} */`);
    if (fields.length === 0) push(`export type ${tsName(full)} = Record<string, never>;`);
    else {
      push(`export interface ${tsName(full)} {`);
      for (const { f, ts } of fields) push(`  ${f.name}: ${ts};`);
      push('}');
    }
    push();
    specs.push(`    '${full}': [${fields.map((x) => `\n      ${x.spec},`).join('')}${fields.length ? '\n    ' : ''}],`);
  }
  push('/** Every message by its full name, for the typed encode and decode of codec.ts. */');
  push('export interface Messages {');
  for (const [full, m] of [...messages].sort(([a], [b]) => a.localeCompare(b))) if (!m.options?.mapEntry) push(`  '${full}': ${tsName(full)};`);
  push('}');
  push();
  push('export const schema = {');
  push('  messages: {');
  for (const s of specs) push(s);
  push('  },');
  push('  enums: {');
  for (const [full, e] of [...enums].sort(([a], [b]) => a.localeCompare(b))) push(`    '${full}': { ${e.value.map((v) => `${v.name}: ${v.number}`).join(', ')} },`);
  push('  },');
  push('} as const satisfies Schema;');
  for (const [full, svc] of services) {
    const short = tsName(full);
    push();
    push(`/** The methods of ${full}: request and response message names, and whether the answer is a stream. */`);
    push(`export const ${short} = {`);
    push(`  name: '${full}',`);
    push('  methods: {');
    for (const [method, m] of Object.entries(svc)) {
      if (m.requestStream) throw new Error(`${full}.${method}: client streams are not supported`);
      const req = fullNameOf(messages, m.requestType);
      const res = fullNameOf(messages, m.responseType);
      push(`    ${method}: { path: '${m.path}', request: '${req}', response: '${res}', responseStream: ${m.responseStream} },`);
    }
    push('  },');
    push('} as const;');
  }
  push();
  return lines.join('\n');
}

/** The full name of a method's message type: proto-loader gives its descriptor, with a short name. */
function fullNameOf(messages, def) {
  const same = [...messages].filter(([full, m]) => tsName(full) === def.type.name && JSON.stringify(m) === JSON.stringify(def.type));
  if (same.length !== 1) throw new Error(`a method's message type ${def.type.name} matches ${same.length} messages`);
  return same[0][0];
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const check = process.argv.includes('--check');
  let stale = 0;
  for (const out of OUTPUTS) {
    const path = join(OUT, out.file);
    const text = generate(out);
    let old = '';
    try { old = readFileSync(path, 'utf8'); } catch { /* not generated yet */ }
    if (old === text) continue;
    if (check) {
      process.stderr.write(`${path} is stale: run npm run gen:proto\n`);
      stale++;
    } else {
      writeFileSync(path, text);
      process.stdout.write(`wrote ${path}\n`);
    }
  }
  process.exitCode = stale ? 1 : 0;
}
