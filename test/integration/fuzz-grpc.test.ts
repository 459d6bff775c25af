// Hostile gRPC input, the quick run: 1,500 random and mutated requests against the real daemon
// (the long run is test/stress/fuzz-grpc.stress.test.ts). CVMFS_FUZZ_SEED repeats a run.
import { fuzzSuite } from '../helpers/fuzz/suite.js';

fuzzSuite('fuzz', [{ count: Number(process.env.CVMFS_FUZZ_COUNT ?? 1500), concurrency: 1 }]);
