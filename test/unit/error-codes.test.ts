// Every typed error maps to its gRPC code in the one place that does it (src/server/status.ts);
// an untyped error is UNKNOWN.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import {
  AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unavailable, Unimplemented,
} from '../../src/errors.js';
import { codeOf, toServiceError } from '../../src/server/status.js';

test('each error type has its gRPC code', () => {
  assert.equal(codeOf(new NotFound('x')), status.NOT_FOUND);
  assert.equal(codeOf(new AlreadyExists('x')), status.ALREADY_EXISTS);
  assert.equal(codeOf(new FailedPrecondition('x')), status.FAILED_PRECONDITION);
  assert.equal(codeOf(new InvalidArgument('x')), status.INVALID_ARGUMENT);
  assert.equal(codeOf(new Unavailable('x')), status.UNAVAILABLE);
  assert.equal(codeOf(new ResourceExhausted('x')), status.RESOURCE_EXHAUSTED);
  assert.equal(codeOf(new Unimplemented('x')), status.UNIMPLEMENTED);
  assert.equal(codeOf(Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' })), status.UNKNOWN);
});

test('a full disk travels as RESOURCE_EXHAUSTED with its message, and keeps its cause', () => {
  const cause = Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
  const err = new ResourceExhausted('the disk is full: no space left on the file system of /var/lib/x while preparing "k" (SQLITE_FULL)', cause);
  assert.equal(err.cause, cause);
  const s = toServiceError(err);
  assert.equal(s.code, status.RESOURCE_EXHAUSTED);
  assert.match(String(s.details), /the disk is full: .*\/var\/lib\/x/);
});
