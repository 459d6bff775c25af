// Hostile gRPC input, the long run: 10,000 random and mutated requests one at a time (exactly
// repeatable from the seed), then 3,000 with eight in flight aimed at the newest snapshots, so
// that they race on one snapshot, against one real daemon.
// CVMFS_FUZZ_SEED repeats a run. The quick run is test/integration/fuzz-grpc.test.ts.
import { fuzzSuite } from '../helpers/fuzz/suite.js';

fuzzSuite('fuzz-stress', [
  { count: Number(process.env.CVMFS_FUZZ_COUNT ?? 10_000), concurrency: 1 },
  { count: 3_000, concurrency: 8 },
]);
