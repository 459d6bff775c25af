// Hostile gRPC input, the quick run: 1,200 random and mutated requests one at a time, then 300
// with eight in flight, against the real daemon (the long run is
// test/stress/fuzz-grpc.stress.test.ts). CVMFS_FUZZ_SEED repeats a run.
import { fuzzSuite } from '../helpers/fuzz/suite.js';

fuzzSuite('fuzz', [
  { count: Number(process.env.CVMFS_FUZZ_COUNT ?? 1200), concurrency: 1 },
  { count: 300, concurrency: 8 },
]);
