//! cargo-fuzz target `rest_rows`: [`pipeline_fuzz::Target::RestRows`] under the allocation bound, with
//! the structure-aware mutations next to libFuzzer's (see `docs/fuzzing.md`).
#![no_main]

use libfuzzer_sys::{fuzz_mutator, fuzz_target, fuzzer_mutate};
use pipeline_fuzz::{Target, mutate::libfuzzer_mutate, run_bounded};

#[global_allocator]
static ALLOC: pipeline_fuzz::alloc::CountingAlloc = pipeline_fuzz::alloc::CountingAlloc;

fuzz_target!(|data: &[u8]| {
    run_bounded(Target::RestRows, data);
});

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    libfuzzer_mutate(Target::RestRows, data, size, max_size, seed, fuzzer_mutate)
});
